"""Resource sets and per-node accounting, in fixed point.

Amounts are kept as integers of 1/10,000 of a unit, as Ray's
``FixedPoint`` (``RESOURCE_UNIT_SCALING``), so that adding and subtracting
fractional demands (0.1 CPU ten times) returns exactly to the start; floats
would drift and a node could end up with 0.9999999 of a CPU forever.

Names: ``CPU``, ``GPU``, ``memory`` (bytes) and any custom resource name.
A ``ResourceSet`` is immutable; ``NodeResources`` is the one mutable holder
(total and available of one node), owned by a state machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from lineagerun.exceptions import InvalidArgumentError

RESOURCE_UNIT_SCALING = 10_000
CPU = "CPU"
GPU = "GPU"
MEMORY = "memory"
# Names are keys of protobuf maps and parts of log lines; a bound keeps a
# mistaken name (a whole file pasted in) from travelling everywhere.
RESOURCE_NAME_LENGTH_MAX = 256


def to_units(name: str, amount: Any) -> int:
    """``amount`` of resource ``name`` in fixed-point units, validated."""
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise InvalidArgumentError(
            f"resource {name!r}: amount must be a number, got {type(amount).__name__} {amount!r}"
        )
    if isinstance(amount, float) and not math.isfinite(amount):
        raise InvalidArgumentError(f"resource {name!r}: amount must be finite, got {amount!r}")
    if amount < 0:
        raise InvalidArgumentError(f"resource {name!r}: amount cannot be negative, got {amount!r}")
    units = round(amount * RESOURCE_UNIT_SCALING) if isinstance(amount, float) else amount * RESOURCE_UNIT_SCALING
    if amount != 0 and units == 0:
        raise InvalidArgumentError(
            f"resource {name!r}: {amount!r} is below the precision of 1/{RESOURCE_UNIT_SCALING}; "
            f"use 0 or at least {1 / RESOURCE_UNIT_SCALING}"
        )
    return units


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"resource names must be non-empty strings, got {name!r}")
    if len(name) > RESOURCE_NAME_LENGTH_MAX:
        raise InvalidArgumentError(
            f"resource name {name[:40]!r}... is longer than {RESOURCE_NAME_LENGTH_MAX} characters"
        )
    return name


def _to_amount(units: int) -> float | int:
    whole, rest = divmod(units, RESOURCE_UNIT_SCALING)
    return whole if rest == 0 else units / RESOURCE_UNIT_SCALING


class ResourceSet(Mapping[str, float]):
    """An immutable map of resource name -> amount (zero amounts omitted)."""

    __slots__ = ("_units",)

    def __init__(self, amounts: Mapping[str, Any] | None = None):
        if amounts is None:
            amounts = {}
        if not isinstance(amounts, Mapping):
            raise InvalidArgumentError(f"resources must be a dict of name -> amount, got {type(amounts).__name__}")
        units = {}
        for name, amount in amounts.items():
            value = to_units(_check_name(name), amount)
            if value:
                units[name] = value
        self._units: dict[str, int] = units

    @classmethod
    def from_units(cls, units: Mapping[str, int]) -> "ResourceSet":
        result = cls()
        for name, value in units.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgumentError(f"resource {name!r}: units must be a non-negative int, got {value!r}")
        result._units = {_check_name(n): v for n, v in units.items() if v}
        return result

    # Mapping interface: amounts as numbers (ints when whole).
    def __getitem__(self, name: str) -> float:
        return _to_amount(self._units[name])

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._units))

    def __len__(self) -> int:
        return len(self._units)

    def units(self, name: str) -> int:
        return self._units.get(name, 0)

    def units_dict(self) -> dict[str, int]:
        return dict(self._units)

    def to_dict(self) -> dict[str, float]:
        return {name: self[name] for name in self}

    def is_empty(self) -> bool:
        return not self._units

    def fits_in(self, capacity: "ResourceSet") -> bool:
        """True if every amount here is at most ``capacity``'s amount."""
        return all(value <= capacity._units.get(name, 0) for name, value in self._units.items())

    def missing_from(self, capacity: "ResourceSet") -> dict[str, float]:
        """What ``capacity`` lacks to hold this set (empty when it fits)."""
        return {
            name: _to_amount(value - capacity._units.get(name, 0))
            for name, value in sorted(self._units.items())
            if value > capacity._units.get(name, 0)
        }

    def __add__(self, other: "ResourceSet") -> "ResourceSet":
        if not isinstance(other, ResourceSet):
            return NotImplemented
        merged = dict(self._units)
        for name, value in other._units.items():
            merged[name] = merged.get(name, 0) + value
        return ResourceSet.from_units(merged)

    def __sub__(self, other: "ResourceSet") -> "ResourceSet":
        if not isinstance(other, ResourceSet):
            return NotImplemented
        if not other.fits_in(self):
            raise InvalidArgumentError(
                f"cannot subtract {other} from {self}: would go negative by {other.missing_from(self)}"
            )
        merged = dict(self._units)
        for name, value in other._units.items():
            merged[name] -= value
        return ResourceSet.from_units(merged)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResourceSet):
            return self._units == other._units
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._units.items()))

    def __repr__(self) -> str:
        return f"ResourceSet({self.to_dict()})"


class NodeResources:
    """Total and available resources of one node.

    ``available`` never goes below zero nor above ``total``: ``allocate``
    refuses what does not fit and ``release`` refuses to return more than was
    taken. Both raise, because a refusal here is a bookkeeping bug of the
    caller, not an operating condition.
    """

    __slots__ = ("total", "available")

    def __init__(self, total: ResourceSet):
        if not isinstance(total, ResourceSet):
            raise InvalidArgumentError(f"total must be a ResourceSet, got {type(total).__name__}")
        self.total = total
        self.available = total

    def is_feasible(self, demand: ResourceSet) -> bool:
        """Could this node ever run ``demand`` (ignoring what is in use)?"""
        return demand.fits_in(self.total)

    def is_available(self, demand: ResourceSet) -> bool:
        return demand.fits_in(self.available)

    def allocate(self, demand: ResourceSet) -> None:
        if not demand.fits_in(self.available):
            raise InvalidArgumentError(
                f"cannot allocate {demand}: available {self.available} lacks {demand.missing_from(self.available)}"
            )
        self.available = self.available - demand

    def release(self, demand: ResourceSet) -> None:
        restored = self.available + demand
        if not restored.fits_in(self.total):
            raise InvalidArgumentError(
                f"cannot release {demand}: available would exceed total {self.total} "
                f"by {restored.missing_from(self.total)}"
            )
        self.available = restored

    def in_use(self) -> ResourceSet:
        return self.total - self.available

    def __repr__(self) -> str:
        return f"NodeResources(total={self.total.to_dict()}, available={self.available.to_dict()})"
