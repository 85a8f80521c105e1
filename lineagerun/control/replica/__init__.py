"""The control-store replica process: ``python -m lineagerun.control.replica``."""
