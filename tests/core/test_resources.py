import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineagerun.core.resources import RESOURCE_UNIT_SCALING, NodeResources, ResourceSet
from lineagerun.exceptions import InvalidArgumentError


def test_fractions_add_up_exactly():
    total = ResourceSet()
    for _ in range(10):
        total = total + ResourceSet({"CPU": 0.1})
    assert total == ResourceSet({"CPU": 1})
    assert total["CPU"] == 1 and isinstance(total["CPU"], int)


def test_zero_amounts_are_omitted():
    assert ResourceSet({"CPU": 0, "GPU": 1}).to_dict() == {"GPU": 1}
    assert ResourceSet({"CPU": 0}).is_empty()


@pytest.mark.parametrize("amount, match", [
    (-1, "cannot be negative"),
    ("1", "must be a number"),
    (True, "must be a number"),
    (math.inf, "finite"),
    (math.nan, "finite"),
    (0.00001, "precision"),
])
def test_bad_amounts_are_refused(amount, match):
    with pytest.raises(InvalidArgumentError, match=match):
        ResourceSet({"CPU": amount})


def test_bad_names_are_refused():
    with pytest.raises(InvalidArgumentError, match="non-empty strings"):
        ResourceSet({"": 1})
    with pytest.raises(InvalidArgumentError, match="non-empty strings"):
        ResourceSet({3: 1})


def test_fits_in_compares_every_resource_including_custom():
    node = ResourceSet({"CPU": 4, "GPU": 1, "accel": 2})
    assert ResourceSet({"CPU": 4, "accel": 2}).fits_in(node)
    assert not ResourceSet({"CPU": 1, "accel": 2.5}).fits_in(node)
    assert not ResourceSet({"TPU": 1}).fits_in(node)
    assert ResourceSet().fits_in(ResourceSet())


def test_subtracting_too_much_is_refused():
    with pytest.raises(InvalidArgumentError, match="would go negative"):
        ResourceSet({"CPU": 1}) - ResourceSet({"CPU": 2})


def test_missing_from_names_the_shortfall():
    assert ResourceSet({"CPU": 3, "GPU": 1}).missing_from(ResourceSet({"CPU": 1})) == {"CPU": 2, "GPU": 1}


def test_node_accounting_allocate_release():
    node = NodeResources(ResourceSet({"CPU": 2, "memory": 10**9}))
    demand = ResourceSet({"CPU": 1.5, "memory": 10**8})
    node.allocate(demand)
    assert node.available == ResourceSet({"CPU": 0.5, "memory": 9 * 10**8})
    assert not node.is_available(demand) and node.is_feasible(demand)
    node.release(demand)
    assert node.available == node.total


def test_node_refuses_overallocation_and_overrelease():
    node = NodeResources(ResourceSet({"CPU": 1}))
    with pytest.raises(InvalidArgumentError, match="cannot allocate"):
        node.allocate(ResourceSet({"CPU": 2}))
    with pytest.raises(InvalidArgumentError, match="exceed total"):
        node.release(ResourceSet({"CPU": 1}))


def test_units_are_fixed_point():
    assert ResourceSet({"CPU": 0.5}).units("CPU") == RESOURCE_UNIT_SCALING // 2
    assert ResourceSet.from_units({"CPU": 5000}) == ResourceSet({"CPU": 0.5})


amounts = st.dictionaries(st.sampled_from(["CPU", "GPU", "x"]),
                          st.integers(0, 10**6).map(lambda u: u / RESOURCE_UNIT_SCALING), max_size=3)


@settings(max_examples=200, deadline=None)
@given(amounts, amounts)
def test_add_then_subtract_is_identity(a, b):
    x, y = ResourceSet(a), ResourceSet(b)
    assert (x + y) - y == x
    assert x.fits_in(x + y)
