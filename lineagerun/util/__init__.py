"""Ray's ``ray.util`` names that lineagerun supports: ``ActorPool``,
``as_completed``, ``map_unordered``, and the modules ``queue`` (``Queue``)
and ``scheduling_strategies``."""

from lineagerun.util.actor_pool import ActorPool
from lineagerun.util.helpers import as_completed, map_unordered

__all__ = ["ActorPool", "as_completed", "map_unordered"]
