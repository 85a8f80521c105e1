"""``lineagerun.util.scheduling_strategies``, as Ray's ``ray.util.scheduling_strategies``."""

from lineagerun.core.scheduling_strategies import (  # noqa: F401
    DEFAULT,
    SPREAD,
    NodeAffinitySchedulingStrategy,
)

__all__ = ["NodeAffinitySchedulingStrategy", "DEFAULT", "SPREAD"]
