"""The global scheduler as a real process, against a real control store, with
fake node managers (load reporters) written here."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from lineagerun.control.cluster import ControlStoreCluster
from lineagerun.core.ids import JobID, NodeID, ObjectID, TaskID
from lineagerun.core.keys import node_key
from lineagerun.core.resources import ResourceSet
from lineagerun.core.scheduling_strategies import NodeAffinitySchedulingStrategy
from lineagerun.exceptions import AuthenticationError, BadRequestError
from lineagerun.rpc import lineage_pb2, scheduler_pb2, scheduler_pb2_grpc
from lineagerun.scheduler.client import (
    ACCEPTED,
    FENCED,
    INFEASIBLE,
    PLACED,
    RETRY,
    ArgumentInfo,
    GlobalSchedulerClient,
    LoadReporter,
    NodeLoad,
    TaskToPlace,
    read_ready,
)
from lineagerun.scheduler.server import NodeEntry, SchedulerSettings, SchedulerState, death_record
from lineagerun.transport.channels import make_aio_channel
from lineagerun.transport.errors import from_rpc_error

NODE_TIMEOUT_MS = 1000
HEARTBEAT_MS = 100
START_TIMEOUT_S = 60.0
JOB = JobID.from_int(7)
DRIVER = TaskID.for_driver(JOB)
_task_counter = iter(range(10**9))


def new_task_id() -> TaskID:
    return TaskID.for_normal_task(JOB, DRIVER, next(_task_counter))


class SchedulerProcess:
    def __init__(self, session_dir: Path, store: ControlStoreCluster, port: int = 0):
        self.session_dir = session_dir
        self.store = store
        self.port = port
        self.popen: subprocess.Popen | None = None
        self.address: str | None = None

    def start(self) -> "SchedulerProcess":
        ready = self.session_dir / "scheduler" / "ready.json"
        ready.unlink(missing_ok=True)
        self.session_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.session_dir / "scheduler.log", "ab")
        argv = [sys.executable, "-m", "lineagerun.scheduler", "--session-dir", str(self.session_dir),
                "--control-store", self.store.address, "--token-file", str(self.store.token_file),
                "--port", str(self.port), "--heartbeat-interval-ms", str(HEARTBEAT_MS),
                "--node-timeout-ms", str(NODE_TIMEOUT_MS)]
        self.popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            if self.popen.poll() is not None:
                raise AssertionError(f"scheduler exited {self.popen.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"scheduler not ready in {START_TIMEOUT_S} s:\n{self.log_tail()}")
            time.sleep(0.02)
        info = read_ready(self.session_dir)
        assert info["pid"] == self.popen.pid
        self.address = info["address"]
        self.port = int(self.address.rsplit(":", 1)[1])
        return self

    def log_tail(self) -> str:
        return "\n".join((self.session_dir / "scheduler.log").read_text(errors="replace").splitlines()[-40:])

    def stop(self) -> int:
        """SIGTERM; returns the exit code (SIGKILL after 10 s)."""
        if self.popen is None or self.popen.poll() is not None:
            return self.popen.returncode if self.popen else 0
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            return self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    cluster = ControlStoreCluster(tmp_path_factory.mktemp("gs-store"), shards=1, replicas=1)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def store_client(store):
    client = store.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def scheduler(store, tmp_path_factory):
    process = SchedulerProcess(tmp_path_factory.mktemp("gs-session"), store).start()
    yield process
    assert process.stop() == 0, process.log_tail()


class FakeNode:
    """A node manager as the scheduler sees it: a NodeRecord and load reports."""

    def __init__(self, store_client, client: GlobalSchedulerClient, total: dict, *, available: dict | None = None,
                 queue_length: int = 0, mean_task_ms: float | None = 10.0, incarnation: int = 1):
        self.node_id = NodeID(os.urandom(NodeID.SIZE))
        self.store_client = store_client
        self.client = client
        self.total = ResourceSet(total)
        self.available = self.total if available is None else ResourceSet(available)
        self.queue_length = queue_length
        self.mean_task_ms = mean_task_ms
        self.incarnation = incarnation
        self.address = f"127.0.0.1:{10000 + int.from_bytes(self.node_id.binary()[:2], 'big') % 50000}"
        self.sealed: list[tuple[ObjectID, int]] = []
        self.reporter: LoadReporter | None = None

    def record(self, alive: bool = True) -> lineage_pb2.NodeRecord:
        return lineage_pb2.NodeRecord(node_id=self.node_id.binary(), address=self.address,
                                      resources_total=self.total.units_dict(), alive=alive,
                                      incarnation=self.incarnation, started_ms=int(time.time() * 1000))

    async def register(self) -> None:
        await asyncio.to_thread(self.store_client.put, node_key(self.node_id), self.record().SerializeToString())

    def load(self) -> NodeLoad:
        sealed, self.sealed = self.sealed, []
        return NodeLoad(self.node_id, self.incarnation, self.address, self.total, self.available,
                        self.queue_length, self.mean_task_ms, sealed)

    async def report(self):
        return await self.client.report_load(self.load())

    def start_reporting(self) -> None:
        self.reporter = LoadReporter(self.client, self.load, interval_ms=HEARTBEAT_MS)
        self.reporter.start()

    async def stop_reporting(self) -> None:
        if self.reporter is not None:
            await self.reporter.stop()

    async def stored_record(self) -> lineage_pb2.NodeRecord | None:
        raw = await asyncio.to_thread(self.store_client.get, node_key(self.node_id))
        return None if raw is None else lineage_pb2.NodeRecord.FromString(raw)


async def wait_until(predicate, what: str, timeout_s: float = 15.0, interval_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval_s)


@asynccontextmanager
async def fake_nodes(store_client, scheduler: SchedulerProcess, specs: list[dict]):
    """Registered, reporting fake nodes; deleted (and forgotten by the
    scheduler) afterwards so that tests do not see each other's nodes."""
    client = GlobalSchedulerClient(scheduler.address, scheduler.store.token)
    nodes = [FakeNode(store_client, client, **spec) for spec in specs]
    try:
        for node in nodes:
            await node.register()
            assert (await node.report()).status == ACCEPTED
            node.start_reporting()
        yield client, nodes
    finally:
        for node in nodes:
            await node.stop_reporting()
            await asyncio.to_thread(store_client.delete, node_key(node.node_id))
        ids = {n.node_id for n in nodes}

        async def forgotten():
            return not ids & {s.node_id for s in await client.cluster_view()}

        await wait_until(forgotten, "the scheduler to forget deleted nodes")
        await client.close()


def run(coro):
    return asyncio.run(coro)


# ----------------------------------------------------------------- placement


@pytest.mark.timeout(60)
def test_placement_by_estimated_wait_and_argument_locality(store_client, scheduler):
    async def main():
        specs = [dict(total={"CPU": 4}, queue_length=q, mean_task_ms=20.0) for q in (5, 1, 3)]
        async with fake_nodes(store_client, scheduler, specs) as (client, (busy, short, medium)):
            [p] = await client.place([TaskToPlace(new_task_id(), ResourceSet({"CPU": 1}))])
            assert p.outcome == PLACED and p.node_id == short.node_id and p.address == short.address
            assert p.estimated_wait_ms == pytest.approx(20.0)
            # 100 MB held by the longest queue: moving it (~1 s) costs more than waiting there
            big = ObjectID.from_index(new_task_id(), 1)
            [p] = await client.place([TaskToPlace(new_task_id(), ResourceSet({"CPU": 1}),
                                                  args=[ArgumentInfo(big, 100_000_000, [busy.node_id])])])
            assert p.node_id == busy.node_id
            # sizes learned from a load report work without the caller's hints
            other = ObjectID.from_index(new_task_id(), 1)
            medium.sealed.append((other, 100_000_000))
            await medium.report()
            [p] = await client.place([TaskToPlace(new_task_id(), ResourceSet({"CPU": 1}),
                                                  args=[ArgumentInfo(other)])])
            assert p.node_id == medium.node_id

    run(main())


@pytest.mark.timeout(60)
def test_custom_resources_and_gpus_are_routed_to_the_nodes_that_have_them(store_client, scheduler):
    async def main():
        specs = [dict(total={"CPU": 8}), dict(total={"CPU": 2, "accel": 1}), dict(total={"CPU": 2, "GPU": 2})]
        async with fake_nodes(store_client, scheduler, specs) as (client, (plain, accel, gpu)):
            placements = await client.place([
                TaskToPlace(new_task_id(), ResourceSet({"accel": 1})),
                TaskToPlace(new_task_id(), ResourceSet({"CPU": 1, "GPU": 1})),
                TaskToPlace(new_task_id(), ResourceSet({"GPU": 0.5})),
                TaskToPlace(new_task_id(), ResourceSet({"CPU": 6})),
            ])
            assert [p.node_id for p in placements] == [accel.node_id, gpu.node_id, gpu.node_id, plain.node_id]
            view = {s.node_id: s for s in await client.cluster_view()}
            assert view[gpu.node_id].total == ResourceSet({"CPU": 2, "GPU": 2})

    run(main())


@pytest.mark.timeout(60)
def test_spread_goes_round_robin_over_three_nodes(store_client, scheduler):
    async def main():
        specs = [dict(total={"CPU": 4}) for _ in range(3)]
        async with fake_nodes(store_client, scheduler, specs) as (client, nodes):
            placements = await client.place([TaskToPlace(new_task_id(), ResourceSet({"CPU": 1}), "SPREAD")
                                             for _ in range(6)])
            counts = {n.node_id: 0 for n in nodes}
            for p in placements:
                counts[p.node_id] += 1
            assert sorted(counts.values()) == [2, 2, 2]
            assert placements[0].node_id != placements[1].node_id != placements[2].node_id

    run(main())


@pytest.mark.timeout(60)
def test_node_affinity_hard_and_soft(store_client, scheduler):
    async def main():
        specs = [dict(total={"CPU": 4}), dict(total={"CPU": 4}, queue_length=50)]
        async with fake_nodes(store_client, scheduler, specs) as (client, (idle, loaded)):
            unknown = NodeID(os.urandom(NodeID.SIZE))
            one_cpu = ResourceSet({"CPU": 1})
            hard, soft, hard_gone, soft_gone, hard_too_big = await client.place([
                TaskToPlace(new_task_id(), one_cpu, NodeAffinitySchedulingStrategy(loaded.node_id.hex())),
                TaskToPlace(new_task_id(), one_cpu, NodeAffinitySchedulingStrategy(loaded.node_id, soft=True)),
                TaskToPlace(new_task_id(), one_cpu, NodeAffinitySchedulingStrategy(unknown.hex())),
                TaskToPlace(new_task_id(), one_cpu, NodeAffinitySchedulingStrategy(unknown.hex(), soft=True)),
                TaskToPlace(new_task_id(), ResourceSet({"CPU": 5}), NodeAffinitySchedulingStrategy(idle.node_id)),
            ])
            # affinity wins over a long queue, hard or soft, while the node is alive and can fit it
            assert hard.outcome == PLACED and hard.node_id == loaded.node_id
            assert soft.outcome == PLACED and soft.node_id == loaded.node_id
            assert hard_gone.outcome == INFEASIBLE and hard_gone.infeasible_kind == "AFFINITY_NODE_DEAD"
            assert unknown.hex() in hard_gone.reason
            assert soft_gone.outcome == PLACED and soft_gone.node_id == idle.node_id
            assert hard_too_big.outcome == INFEASIBLE
            assert hard_too_big.infeasible_kind == "AFFINITY_NODE_CANNOT_FIT"

    run(main())


@pytest.mark.timeout(60)
def test_infeasible_fails_fast_with_a_reason_and_busy_means_retry(store_client, scheduler):
    async def main():
        specs = [dict(total={"CPU": 2}, available={}), dict(total={"CPU": 2, "GPU": 1}, available={"GPU": 1})]
        async with fake_nodes(store_client, scheduler, specs) as (client, (full, gpu)):
            started = time.monotonic()
            [p] = await client.place([TaskToPlace(new_task_id(), ResourceSet({"GPU": 2}))])
            assert time.monotonic() - started < 1.0
            assert p.outcome == INFEASIBLE and p.infeasible_kind == "NO_NODE_FITS"
            assert "no alive node" in p.reason and "GPU" in p.reason
            two_cpus = ResourceSet({"CPU": 2})
            # exists, but taken right now: RETRY when the caller only wants a node with room ...
            [p] = await client.place([TaskToPlace(new_task_id(), two_cpus)], only_if_available=True)
            assert p.outcome == RETRY and p.retry_after_ms == HEARTBEAT_MS and "available now" in p.reason
            [p] = await client.place([TaskToPlace(new_task_id(), ResourceSet({"CPU": 3}))], only_if_available=True)
            assert p.outcome == INFEASIBLE
            # ... queued on the node with the lowest estimated wait otherwise
            [p] = await client.place([TaskToPlace(new_task_id(), two_cpus)])
            assert p.outcome == PLACED
            # once a report says there is room, it is placed there
            gpu.available = gpu.total
            await gpu.report()
            [p] = await client.place([TaskToPlace(new_task_id(), two_cpus)], only_if_available=True)
            assert p.outcome == PLACED and p.node_id == gpu.node_id

    run(main())


# ---------------------------------------------------------- failure detection


@pytest.mark.timeout(60)
def test_a_silent_node_is_declared_dead_and_its_old_incarnation_refused(store_client, scheduler):
    async def main():
        specs = [dict(total={"CPU": 2}), dict(total={"CPU": 2})]
        async with fake_nodes(store_client, scheduler, specs) as (client, (victim, survivor)):
            await victim.stop_reporting()
            reply = await victim.report()
            last_report_s = time.monotonic()
            assert reply.status == ACCEPTED and reply.node_timeout_ms == NODE_TIMEOUT_MS

            async def dead_record():
                record = await victim.stored_record()
                return record if record is not None and not record.alive else None

            record = await wait_until(dead_record, "the death record", timeout_s=10, interval_s=0.01)
            detected_s = time.monotonic() - last_report_s
            print(f"death record {detected_s * 1000:.0f} ms after the last report")
            # not before the timeout; within it plus a tick (100 ms), with slack for a loaded machine
            assert 0.7 * NODE_TIMEOUT_MS / 1000 <= detected_s <= NODE_TIMEOUT_MS / 1000 + 0.1 + 1.0, detected_s
            silent_ms = int(re.search(r"no heartbeat for (\d+) ms", record.death_reason).group(1))
            assert NODE_TIMEOUT_MS <= silent_ms <= NODE_TIMEOUT_MS + 1000  # the scheduler's own measure
            assert record.incarnation == 1 and record.died_ms > 0 and record.address == victim.address
            assert "no heartbeat" in record.death_reason and ResourceSet.from_units(
                dict(record.resources_total)) == victim.total
            view = {s.node_id: s for s in await client.cluster_view()}
            assert not view[victim.node_id].alive and "no heartbeat" in view[victim.node_id].death_reason
            assert view[survivor.node_id].alive  # kept reporting: never suspected
            assert victim.node_id not in {s.node_id for s in await client.cluster_view(include_dead=False)}
            [p] = await client.place([TaskToPlace(new_task_id(), ResourceSet({"CPU": 1}),
                                                  NodeAffinitySchedulingStrategy(victim.node_id))])
            assert p.outcome == INFEASIBLE and p.infeasible_kind == "AFFINITY_NODE_DEAD"

            # the old incarnation is refused, also after a stale alive record of it is written
            fenced = await victim.report()
            assert fenced.status == FENCED and "above 1" in fenced.reason
            await victim.register()  # a stale writer: alive=true, incarnation 1
            await wait_until(dead_record, "the death to be written back over a stale record")
            # a new incarnation is admitted
            victim.incarnation = 2
            await victim.register()
            assert (await victim.report()).status == ACCEPTED
            view = {s.node_id: s for s in await client.cluster_view()}
            assert view[victim.node_id].alive and view[victim.node_id].incarnation == 2
            assert (await victim.stored_record()).alive
            victim.incarnation = 1
            assert (await victim.report()).status == FENCED
            # a reporter of the fenced incarnation tells its node manager, and stops
            told = asyncio.Event()
            reporter = LoadReporter(client, victim.load, interval_ms=HEARTBEAT_MS, on_fenced=lambda _: told.set())
            reporter.start()
            await asyncio.wait_for(told.wait(), 10)
            await wait_until(lambda: _done(reporter), "the fenced reporter to stop")
            assert "declared dead" in reporter.fenced_reason

    run(main())


# ------------------------------------------------------------------- security


@pytest.mark.timeout(60)
def test_wrong_token_is_refused(scheduler):
    async def main():
        async with GlobalSchedulerClient(scheduler.address, "not-the-token") as client:
            with pytest.raises(AuthenticationError):
                await client.cluster_view()
            with pytest.raises(AuthenticationError):
                await client.place([TaskToPlace(new_task_id(), ResourceSet({"CPU": 1}))])
            load = NodeLoad(NodeID(os.urandom(28)), 1, "x:1", ResourceSet({"CPU": 1}), ResourceSet({"CPU": 1}))
            with pytest.raises(AuthenticationError):
                await client.report_load(load)
            assert not {s.node_id for s in await _view(scheduler)} & {load.node_id}

    run(main())


async def _view(scheduler):
    async with GlobalSchedulerClient(scheduler.address, scheduler.store.token) as client:
        return await client.cluster_view()


@pytest.mark.timeout(60)
def test_bad_requests_get_typed_errors(scheduler):
    async def main():
        async with GlobalSchedulerClient(scheduler.address, scheduler.store.token) as client:
            node = NodeID(os.urandom(28))
            with pytest.raises(BadRequestError, match="exceeds total"):
                await client.report_load(NodeLoad(node, 1, "x:1", ResourceSet({"CPU": 1}), ResourceSet({"CPU": 2})))
            with pytest.raises(BadRequestError, match="incarnation"):
                await client.report_load(NodeLoad(node, 0, "x:1", ResourceSet({"CPU": 1}), ResourceSet({"CPU": 1})))
        channel = make_aio_channel(scheduler.address, scheduler.store.token)
        stub = scheduler_pb2_grpc.GlobalSchedulerStub(channel)
        try:
            for request, match in [
                (scheduler_pb2.PlaceRequest(tasks=[scheduler_pb2.TaskToPlace(task_id=b"short")]), "task_id"),
                (scheduler_pb2.PlaceRequest(tasks=[scheduler_pb2.TaskToPlace(
                    task_id=new_task_id().binary(), resources={"": 10000})]), "resource names"),
            ]:
                with pytest.raises(BadRequestError, match=match):
                    try:
                        await stub.PlaceTasks(request, timeout=5)
                    except Exception as err:  # grpc.aio.AioRpcError
                        raise from_rpc_error(err) from None
        finally:
            await channel.close()

    run(main())


# -------------------------------------------------------------------- restart


@pytest.mark.timeout(90)
def test_a_restarted_scheduler_rebuilds_its_view_from_the_control_store(tmp_path):
    # Its own store: the module's scheduler would declare these nodes dead.
    store = ControlStoreCluster(tmp_path / "store", shards=1, replicas=1).start()
    store_client = store.client()

    async def main(process: SchedulerProcess):
        client = GlobalSchedulerClient(process.address, store.token)
        gpu = FakeNode(store_client, client, {"CPU": 2, "GPU": 1})
        cpu = FakeNode(store_client, client, {"CPU": 4})
        gone = FakeNode(store_client, client, {"CPU": 64})
        try:
            for node in (gpu, cpu):
                await node.register()
                node.start_reporting()
            await asyncio.to_thread(store_client.put, node_key(gone.node_id),
                                    gone.record(alive=False).SerializeToString())
            await wait_until(lambda: _all_heard(client, (gpu, cpu)), "the first reports")
            for node in (gpu, cpu):
                await node.stop_reporting()  # so that what follows comes from the records alone
            assert process.stop() == 0, process.log_tail()
            process.start()
            view = {s.node_id: s for s in await client.cluster_view()}
            assert view[gpu.node_id].alive and view[gpu.node_id].total == gpu.total
            assert view[cpu.node_id].alive and view[cpu.node_id].address == cpu.address
            assert not view[gone.node_id].alive
            assert (await gone.report()).status == FENCED  # fences survive the restart
            [p] = await client.place([TaskToPlace(new_task_id(), ResourceSet({"GPU": 1}))])
            assert p.outcome == PLACED and p.node_id == gpu.node_id

            for node in (gpu, cpu):
                node.start_reporting()  # same port: the client reconnects
            [p] = await client.place([TaskToPlace(new_task_id(), ResourceSet({"CPU": 64}))])
            assert p.outcome == INFEASIBLE  # the 64-CPU node is dead
            await asyncio.sleep(NODE_TIMEOUT_MS / 1000 + 0.3)  # reporting nodes stay alive across the restart
            assert all(s.alive for s in await client.cluster_view(include_dead=False))
            assert len(await client.cluster_view(include_dead=False)) == 2
        finally:
            for node in (gpu, cpu):
                await node.stop_reporting()
            await client.close()

    try:
        process = SchedulerProcess(tmp_path / "session", store).start()
        try:
            run(main(process))
        finally:
            assert process.stop() == 0, process.log_tail()
        assert not (tmp_path / "session" / "scheduler" / "ready.json").exists()
    finally:
        store_client.close()
        store.stop()


async def _done(reporter: LoadReporter) -> bool:
    return not reporter.running


async def _all_heard(client, nodes) -> bool:
    statuses = {s.node_id: s for s in await client.cluster_view()}
    return all(n.node_id in statuses and statuses[n.node_id].mean_task_ms for n in nodes)


def test_ready_file_format(scheduler):
    info = json.loads((scheduler.session_dir / "scheduler" / "ready.json").read_text())
    assert set(info) == {"address", "pid"} and info["address"] == scheduler.address


# ------------------------------------------------------- in-process, no I/O


def _record(node_id: NodeID, incarnation: int, alive: bool, **fields) -> lineage_pb2.NodeRecord:
    return lineage_pb2.NodeRecord(node_id=node_id.binary(), incarnation=incarnation, alive=alive,
                                  resources_total={"CPU": 20000}, address="127.0.0.1:1", **fields)


def test_death_records_never_overwrite_a_newer_incarnation_or_a_deleted_record():
    node_id = NodeID(os.urandom(28))
    entry = NodeEntry(node_id, incarnation=2, address="a:1")
    assert death_record(None, entry, "why", 5) is None
    assert death_record(_record(node_id, 3, True), entry, "why", 5) is None
    assert death_record(_record(node_id, 2, False), entry, "why", 5) is None
    written = death_record(_record(node_id, 2, True, started_ms=9), entry, "no heartbeat", 5)
    assert (written.alive, written.incarnation, written.died_ms, written.death_reason, written.started_ms) == (
        False, 2, 5, "no heartbeat", 9)


def test_state_follows_records_and_reports_without_a_store():
    written = []
    state = SchedulerState(SchedulerSettings(100, 1000), lambda entry, reason: written.append((entry, reason)))
    node_id = NodeID(os.urandom(28))
    state.on_record(node_id, _record(node_id, 1, True))
    assert state.liveness.is_alive(node_id) and state.policy.nodes[node_id].total == ResourceSet({"CPU": 2})
    # a stale alive record of a fenced incarnation is written back as dead
    state.on_record(node_id, _record(node_id, 1, False, death_reason="stopped"))
    assert node_id not in state.policy.nodes
    state.on_record(node_id, _record(node_id, 1, True))
    assert [(e.incarnation, r) for e, r in written] == [(1, "stopped")]
    report = scheduler_pb2.LoadReport(node_id=node_id.binary(), incarnation=1, resources_total={"CPU": 20000},
                                      resources_available={"CPU": 10000})
    assert state.report(report).status == scheduler_pb2.LoadReportReply.FENCED
    report.incarnation = 2
    assert state.report(report).status == scheduler_pb2.LoadReportReply.ACCEPTED
    assert state.policy.nodes[node_id].available == ResourceSet({"CPU": 1})
    report.sealed_objects.extend(scheduler_pb2.ObjectSize(object_id=os.urandom(28)) for _ in range(1001))
    with pytest.raises(BadRequestError, match="at most 1000"):
        state.report(report)
    state.on_record(node_id, None)  # deleted: forgotten
    assert node_id not in state.entries and node_id not in state.policy.nodes
    assert not state.liveness.nodes
    state.liveness.check_invariants()
