import pytest

from lineagerun.core.ids import NodeID
from lineagerun.core.options import (
    ACTOR,
    ACTOR_OPTIONS,
    OPTIONS,
    TASK,
    TASK_OPTIONS,
    actor_resource_demands,
    merge,
    options_table_markdown,
    task_resource_demand,
    validate_actor_options,
    validate_task_options,
    with_defaults,
)
from lineagerun.core.resources import ResourceSet
from lineagerun.core.scheduling_strategies import NodeAffinitySchedulingStrategy, normalize_strategy
from lineagerun.exceptions import InvalidArgumentError

NODE_HEX = "ab" * 28


def test_valid_task_options_pass_and_are_copied():
    given = {"num_cpus": 0.5, "num_gpus": 1, "resources": {"accel": 2}, "memory": 10**9, "num_returns": 2,
             "max_retries": -1, "retry_exceptions": [ValueError], "name": "f", "scheduling_strategy": "SPREAD",
             "runtime_env": {}}
    checked = validate_task_options(given)
    assert checked == given and checked is not given


def test_valid_actor_options_pass():
    validate_actor_options({"num_cpus": 2, "name": "a", "namespace": "ns", "lifetime": "detached",
                            "max_restarts": -1, "max_task_retries": 3, "max_concurrency": 4,
                            "checkpoint_interval": 10, "get_if_exists": True,
                            "scheduling_strategy": NodeAffinitySchedulingStrategy(NODE_HEX, soft=True)})


def test_unknown_option_is_named_with_the_valid_ones():
    with pytest.raises(InvalidArgumentError,
                       match="'num_cpu'.*is not an option.*did you mean 'num_cpus'.*valid options are"):
        validate_task_options({"num_cpu": 1})
    with pytest.raises(InvalidArgumentError, match="'zzz' is not an option; valid options are"):
        validate_actor_options({"zzz": 1})


def test_option_of_the_other_kind_says_so():
    with pytest.raises(InvalidArgumentError, match="lifetime.*applies to actors only"):
        validate_task_options({"lifetime": "detached"})
    with pytest.raises(InvalidArgumentError, match="max_retries.*applies to remote functions"):
        validate_actor_options({"max_retries": 1})


def test_unsupported_ray_option_says_unsupported():
    with pytest.raises(InvalidArgumentError, match="Ray option that lineagerun does not support"):
        validate_task_options({"placement_group": None})


@pytest.mark.parametrize("options, match", [
    ({"num_cpus": -1}, "num_cpus.*-1.*cannot be negative"),
    ({"num_cpus": "1"}, "num_cpus.*a number is required"),
    ({"num_gpus": 0.00001}, "precision"),
    ({"resources": {"CPU": 1}}, "use num_cpus"),
    ({"resources": {"memory": 1}}, "memory option"),
    ({"resources": {"x": -2}}, "cannot be negative"),
    ({"resources": [1]}, "dict of resource name"),
    ({"num_returns": -1}, "num_returns.*must be >= 0"),
    ({"num_returns": "dynamic"}, "generators.*not supported"),
    ({"num_returns": "streaming"}, "not supported"),
    ({"num_returns": True}, "an int is required"),
    ({"max_retries": -2}, "max_retries.*must be >= -1"),
    ({"max_retries": 1.0}, "an int is required"),
    ({"retry_exceptions": [KeyboardInterrupt]}, "not an exception class"),
    ({"retry_exceptions": "yes"}, "a bool or a list"),
    ({"name": ""}, "cannot be empty"),
    ({"scheduling_strategy": "RANDOM"}, "scheduling_strategy.*allowed: None, 'DEFAULT', 'SPREAD'"),
    ({"runtime_env": {"pip": ["x"]}}, "not supported by lineagerun yet"),
])
def test_bad_task_values_say_option_value_and_allowed(options, match):
    with pytest.raises(InvalidArgumentError, match=match) as info:
        validate_task_options(options)
    assert "allowed:" in str(info.value)


@pytest.mark.parametrize("options, match", [
    ({"lifetime": "forever"}, "lifetime.*'forever'.*'detached' or 'non_detached'"),
    ({"max_restarts": -5}, "max_restarts.*must be >= -1"),
    ({"max_concurrency": 0}, "max_concurrency.*must be >= 1"),
    ({"checkpoint_interval": -1}, "checkpoint_interval.*must be >= 0"),
    ({"get_if_exists": 1}, "a bool is required"),
])
def test_bad_actor_values_are_refused(options, match):
    with pytest.raises(InvalidArgumentError, match=match):
        validate_actor_options(options)


def test_get_if_exists_needs_a_name():
    with pytest.raises(InvalidArgumentError, match="needs option 'name'"):
        validate_actor_options({"get_if_exists": True})


def test_max_task_retries_needs_max_restarts():
    with pytest.raises(InvalidArgumentError, match="needs 'max_restarts'"):
        validate_actor_options({"max_task_retries": 2})


def test_options_must_be_a_dict():
    with pytest.raises(InvalidArgumentError, match="must be a dict"):
        validate_task_options([("num_cpus", 1)])


def test_merge_lets_overrides_win_and_replaces_resources():
    base = {"num_cpus": 1, "resources": {"a": 1, "b": 1}, "max_retries": 2}
    merged = merge(base, {"num_cpus": 2, "resources": {"a": 3}})
    assert merged == {"num_cpus": 2, "resources": {"a": 3}, "max_retries": 2}
    assert base["num_cpus"] == 1


def test_defaults_follow_ray():
    task = with_defaults({}, TASK)
    actor = with_defaults({}, ACTOR)
    assert (task["num_cpus"], task["max_retries"], task["num_returns"], task["retry_exceptions"]) == (1, 3, 1, False)
    assert (actor["max_restarts"], actor["max_task_retries"], actor["max_concurrency"]) == (0, 0, 1)
    assert "max_retries" not in actor and "lifetime" not in task


def test_every_option_is_in_the_table_with_a_kind():
    assert set(TASK_OPTIONS) | set(ACTOR_OPTIONS) == set(OPTIONS)
    for name in ("num_cpus", "resources", "scheduling_strategy", "runtime_env", "name"):
        assert name in TASK_OPTIONS and name in ACTOR_OPTIONS
    markdown = options_table_markdown()
    assert all(f"`{name}`" in markdown for name in OPTIONS)


def test_task_resource_demand_defaults_to_one_cpu():
    assert task_resource_demand({}) == ResourceSet({"CPU": 1})
    assert task_resource_demand({"num_cpus": 0, "num_gpus": 1, "resources": {"x": 2}, "memory": 100}) == \
        ResourceSet({"GPU": 1, "x": 2, "memory": 100})


def test_actor_without_resources_places_with_one_cpu_and_holds_none():
    demands = actor_resource_demands({})
    assert demands.placement == ResourceSet({"CPU": 1})
    assert demands.lifetime == ResourceSet()


def test_actor_naming_a_resource_holds_one_cpu_for_life():
    demands = actor_resource_demands({"num_gpus": 1})
    assert demands.lifetime == demands.placement == ResourceSet({"CPU": 1, "GPU": 1})
    assert actor_resource_demands({"num_cpus": 0, "resources": {"x": 1}}).lifetime == ResourceSet({"x": 1})


def test_node_affinity_accepts_hex_or_node_id_and_refuses_garbage():
    node = NodeID.from_hex(NODE_HEX)
    assert NodeAffinitySchedulingStrategy(node).node_id == NODE_HEX
    assert NodeAffinitySchedulingStrategy(NODE_HEX.upper()).node() == node
    with pytest.raises(InvalidArgumentError, match="hex digits"):
        NodeAffinitySchedulingStrategy("node-1")
    with pytest.raises(InvalidArgumentError, match="soft must be a bool"):
        NodeAffinitySchedulingStrategy(NODE_HEX, soft="yes")


def test_normalize_strategy():
    assert normalize_strategy(None) == "DEFAULT"
    assert normalize_strategy("SPREAD") == "SPREAD"
    with pytest.raises(InvalidArgumentError, match="not supported"):
        normalize_strategy("spread")


def test_docs_carry_the_current_options_table():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "lineage-records.md").read_text()
    assert options_table_markdown() in doc, "regenerate the table in docs/lineage-records.md"
