import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lineagerun.core.global_scheduler import (
    INFEASIBLE_AFFINITY_NODE_CANNOT_FIT,
    INFEASIBLE_AFFINITY_NODE_DEAD,
    INFEASIBLE_NO_NODE_FITS,
    MEAN_TASK_MS_UNKNOWN,
    FailInfeasible,
    GlobalScheduler,
    Infeasible,
    NodeRemoved,
    NodeView,
    NodeViewUpdated,
    PlaceOnNode,
    PlacementRequest,
    Placed,
    PlaceTask,
    estimated_wait_ms,
    place,
)
from lineagerun.core.ids import JobID, NodeID, ObjectID, TaskID
from lineagerun.core.resources import ResourceSet
from lineagerun.core.scheduling_strategies import NodeAffinitySchedulingStrategy
from lineagerun.exceptions import InvalidArgumentError

JOB = JobID.from_int(1)
DRIVER = TaskID.for_driver(JOB)
TASK = TaskID.for_normal_task(JOB, DRIVER, 0)
CPU1 = ResourceSet({"CPU": 1})


def node_id(n: int) -> NodeID:
    return NodeID(bytes([n]) * 28)


def view(n, cpus=4, available=None, queue=0, mean=10.0, objects=None, alive=True, **extra):
    total = ResourceSet({"CPU": cpus, **extra})
    return NodeView(node_id(n), total, total if available is None else ResourceSet(available), queue, mean,
                    objects or {}, alive)


def request(demand=CPU1, strategy=None, args=None):
    return PlacementRequest(TASK, demand, strategy, args or {})


def test_picks_the_shortest_queue():
    nodes = [view(1, queue=5), view(2, queue=1), view(3, queue=3)]
    result, _ = place(request(), nodes)
    assert result == Placed(TASK, node_id(2), 10.0)


def test_queue_times_mean_task_time():
    # 3 tasks of 1 ms beat 1 task of 100 ms
    nodes = [view(1, queue=3, mean=1.0), view(2, queue=1, mean=100.0)]
    assert place(request(), nodes)[0].node_id == node_id(1)


def test_argument_locality_counts_bytes_over_bandwidth():
    arg = ObjectID.from_index(TaskID.for_normal_task(JOB, DRIVER, 9), 1)
    nodes = [view(1, queue=0), view(2, queue=2, objects={arg: 10**9})]
    # 1 GB at 100 kB/ms = 10 s of transfer, far more than 2 queued 10 ms tasks
    result, _ = place(request(args={arg: None}), nodes, bandwidth_bytes_per_ms=100_000)
    assert result.node_id == node_id(2)
    assert result.estimated_wait_ms == 20.0
    assert estimated_wait_ms(nodes[0], CPU1, {arg: 10**9}, 100_000) == 10_000.0


def test_a_busy_node_costs_one_more_task():
    nodes = [view(1, available={"CPU": 0}), view(2, queue=0)]
    assert place(request(), nodes)[0].node_id == node_id(2)


def test_unknown_mean_uses_the_named_default():
    node = NodeView(node_id(1), CPU1, CPU1, queue_length=2)
    assert estimated_wait_ms(node, CPU1, {}, 1.0) == 2 * MEAN_TASK_MS_UNKNOWN


def test_ties_break_by_node_id_deterministically():
    nodes = [view(3), view(1), view(2)]
    assert place(request(), nodes)[0].node_id == node_id(1)


def test_custom_and_gpu_resources_are_honoured():
    nodes = [view(1, cpus=8), view(2, cpus=1, GPU=1), view(3, cpus=1, accel=2)]
    assert place(request(ResourceSet({"GPU": 1})), nodes)[0].node_id == node_id(2)
    assert place(request(ResourceSet({"CPU": 1, "accel": 2})), nodes)[0].node_id == node_id(3)


def test_dead_nodes_are_never_chosen():
    nodes = [view(1, alive=False), view(2, queue=50)]
    assert place(request(), nodes)[0].node_id == node_id(2)


def test_infeasible_when_no_live_node_can_ever_fit():
    nodes = [view(1, cpus=2), view(2, cpus=64, alive=False)]
    result, _ = place(request(ResourceSet({"CPU": 8})), nodes)
    assert isinstance(result, Infeasible) and result.kind == INFEASIBLE_NO_NODE_FITS
    assert "CPU" in result.reason


def test_infeasible_with_no_nodes_at_all():
    assert place(request(), [])[0].kind == INFEASIBLE_NO_NODE_FITS


def test_spread_round_robins_over_feasible_nodes():
    nodes = [view(1), view(2, cpus=0.5), view(3), view(4)]  # node 2 cannot fit 1 CPU
    cursor, chosen = 0, []
    for _ in range(6):
        result, cursor = place(request(strategy="SPREAD"), nodes, cursor)
        chosen.append(result.node_id)
    assert chosen == [node_id(1), node_id(3), node_id(4)] * 2


def test_spread_prefers_nodes_with_free_resources():
    nodes = [view(1, available={"CPU": 0}), view(2)]
    result, cursor = place(request(strategy="SPREAD"), nodes, 0)
    assert result.node_id == node_id(2) and cursor == 0


def test_hard_affinity_places_on_the_node_even_if_busy():
    strategy = NodeAffinitySchedulingStrategy(node_id(2).hex())
    nodes = [view(1), view(2, queue=99, available={"CPU": 0})]
    assert place(request(strategy=strategy), nodes)[0].node_id == node_id(2)


def test_hard_affinity_to_dead_node_is_infeasible():
    strategy = NodeAffinitySchedulingStrategy(node_id(2).hex())
    result, _ = place(request(strategy=strategy), [view(1), view(2, alive=False)])
    assert result.kind == INFEASIBLE_AFFINITY_NODE_DEAD
    result, _ = place(request(strategy=strategy), [view(1)])
    assert result.kind == INFEASIBLE_AFFINITY_NODE_DEAD


def test_hard_affinity_to_too_small_node_is_infeasible():
    strategy = NodeAffinitySchedulingStrategy(node_id(2).hex())
    result, _ = place(request(ResourceSet({"CPU": 8}), strategy), [view(1, cpus=16), view(2, cpus=4)])
    assert result.kind == INFEASIBLE_AFFINITY_NODE_CANNOT_FIT


def test_soft_affinity_falls_back_when_node_dead_or_too_small():
    dead = NodeAffinitySchedulingStrategy(node_id(2).hex(), soft=True)
    assert place(request(strategy=dead), [view(1), view(2, alive=False)])[0].node_id == node_id(1)
    small = NodeAffinitySchedulingStrategy(node_id(2).hex(), soft=True)
    assert place(request(ResourceSet({"CPU": 8}), small), [view(1, cpus=8), view(2)])[0].node_id == node_id(1)


def test_bad_bandwidth_is_refused():
    with pytest.raises(InvalidArgumentError, match="bandwidth"):
        place(request(), [view(1)], bandwidth_bytes_per_ms=0)


def test_state_machine_places_and_charges_the_chosen_node():
    scheduler = GlobalScheduler()
    scheduler.handle(NodeViewUpdated(view(1, cpus=1)))
    scheduler.handle(NodeViewUpdated(view(2, cpus=1, queue=1)))
    first = scheduler.handle(PlaceTask(request()))
    assert first == [PlaceOnNode(TASK, node_id(1), 0.0)]
    assert scheduler.nodes[node_id(1)].available == ResourceSet()
    # node 1 busy, no queue: (0+1)*10; node 2 free, queue 1: (1+0)*10 -> tie, lower id wins
    second = scheduler.handle(PlaceTask(request()))
    assert [e.node_id for e in second] == [node_id(1)]
    assert scheduler.nodes[node_id(1)].queue_length == 1
    # node 1 now (1+1)*10 = 20 against node 2's 10
    third = scheduler.handle(PlaceTask(request()))
    assert [e.node_id for e in third] == [node_id(2)]
    scheduler.handle(NodeViewUpdated(view(1, cpus=1)))  # heartbeat resets the charge
    assert scheduler.nodes[node_id(1)].queue_length == 0


def test_state_machine_fails_infeasible_and_forgets_removed_nodes():
    scheduler = GlobalScheduler()
    scheduler.handle(NodeViewUpdated(view(1)))
    scheduler.handle(NodeRemoved(node_id(1)))
    effects = scheduler.handle(PlaceTask(request()))
    assert len(effects) == 1 and isinstance(effects[0], FailInfeasible)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 20), st.booleans()), min_size=1, max_size=6),
       st.integers(0, 8))
def test_placement_is_feasible_or_infeasible_is_true(specs, cpus):
    nodes = [view(i + 1, cpus=c, queue=q, alive=a) for i, (c, q, a) in enumerate(specs)]
    demand = ResourceSet({"CPU": cpus})
    result, _ = place(request(demand), nodes)
    feasible = [n for n in nodes if n.alive and demand.fits_in(n.total)]
    if isinstance(result, Placed):
        chosen = next(n for n in nodes if n.node_id == result.node_id)
        assert chosen in feasible
        assert result.estimated_wait_ms == min(estimated_wait_ms(n, demand, {}, 100_000.0) for n in feasible)
    else:
        assert not feasible
