"""Ray's ``ray.util`` names that lineagerun supports: ``ActorPool``,
``as_completed``, ``map_unordered``, and the modules ``queue`` (``Queue``)
and ``scheduling_strategies``.

Loaded on first use: the node manager and the replicas import
``lineagerun.util.event_loop`` and must not pull in the client API."""

_EXPORTS = {
    "ActorPool": ("lineagerun.util.actor_pool", "ActorPool"),
    "as_completed": ("lineagerun.util.helpers", "as_completed"),
    "map_unordered": ("lineagerun.util.helpers", "map_unordered"),
}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        module, attribute = _EXPORTS[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'lineagerun.util' has no attribute {name!r}")


__all__ = ["ActorPool", "as_completed", "map_unordered"]
