"""The public API's implementation; ``lineagerun/__init__.py`` re-exports it."""
