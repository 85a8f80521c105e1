"""The chain coordinator process (``python -m lineagerun.control.coordinator``):
a gRPC shell around ``lineagerun.core.chain.coordinator``."""
