"""``lineagerun start --head | --address``, ``lineagerun stop``, ``lineagerun status``.

In the style of ``ray start``: ``start --head`` starts a control store,
the global scheduler and a node manager in the background under a new
session directory (token 0600, logs, recorded pids) and prints the address;
``start --address`` joins one more node manager; ``stop`` stops, by their
recorded pids and process groups, what this machine runs; ``status`` shows
nodes (resources used/total, liveness), pending demand and the control
store's chains. Also runnable as ``python -m lineagerun.cli.cluster``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from lineagerun.exceptions import LineagerunError

CONTROL_STORE_DIR_NAME = "control"
# `status` gives up reading the recovery counters after this long.
STATUS_READ_TIMEOUT_S = 10.0


def _resources(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"--resources must be a JSON object, e.g. '{{\"special\": 2}}': {exc}")
    if not isinstance(value, dict) or not all(isinstance(v, (int, float)) for v in value.values()):
        raise click.BadParameter("--resources must be a JSON object of resource name -> amount")
    return value


def _default_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _tls(cert: str | None, key: str | None, ca: str | None):
    """The TLS files of the command line (None: not given)."""
    from lineagerun.transport.tls import from_flags

    if ca and not cert:
        raise click.BadParameter("--tls-ca needs --tls-cert and --tls-key (this node serves TLS too)")
    try:
        return from_flags(cert and str(Path(cert).resolve()), key and str(Path(key).resolve()),
                          ca and str(Path(ca).resolve()))
    except LineagerunError as err:
        raise click.BadParameter(str(err)) from None


@click.command("start")
@click.option("--head", is_flag=True, help="start a new cluster (control store, global scheduler, a node)")
@click.option("--address", default=None, help="join the cluster at HOST:PORT (printed by start --head)")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="head: the control store's (cluster address) port; 0 picks one")
@click.option("--num-cpus", default=None, type=float, help="CPUs of this node (default: this machine's)")
@click.option("--num-gpus", default=0, type=float, show_default=True)
@click.option("--resources", default=None, help="custom resources, JSON: '{\"special\": 2}'")
@click.option("--object-store-memory", default=None, type=int, help="bytes of shared memory for objects")
@click.option("--shards", default=1, show_default=True, type=click.IntRange(1, 64), help="control-store shards")
@click.option("--replicas", default=2, show_default=True, type=click.IntRange(1, 7),
              help="control-store replicas per shard")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on; anything but loopback needs the cluster token (always set)")
@click.option("--token-file", default=None, type=click.Path(dir_okay=False),
              help="join: the cluster's token file (default: found in the local session directory)")
@click.option("--heartbeat-interval-ms", default=100, show_default=True, type=click.IntRange(1, 60_000))
@click.option("--node-timeout-ms", default=1000, show_default=True, type=click.IntRange(10, 600_000))
@click.option("--tls-cert", default=None, type=click.Path(exists=True, dir_okay=False),
              help="PEM certificate naming the hosts (subjectAltName): every process serves TLS (with --tls-key); "
                   "join: default the cluster's")
@click.option("--tls-key", default=None, type=click.Path(exists=True, dir_okay=False),
              help="PEM private key of --tls-cert")
@click.option("--tls-ca", default=None, type=click.Path(exists=True, dir_okay=False),
              help="PEM CA that signed the certificates (default: --tls-cert itself, self-signed)")
def start(head, address, port, num_cpus, num_gpus, resources, object_store_memory, shards, replicas, host,
          token_file, heartbeat_interval_ms, node_timeout_ms, tls_cert, tls_key, tls_ca) -> None:
    """Start a head (--head) or join a node to a cluster (--address)."""
    if head == bool(address):
        raise click.UsageError("pass exactly one of --head or --address HOST:PORT")
    node_args = {"num_cpus": num_cpus if num_cpus is not None else _default_cpus(), "num_gpus": num_gpus,
                 "resources": _resources(resources), "object_store_memory": object_store_memory, "host": host,
                 "heartbeat_interval_ms": heartbeat_interval_ms, "tls": _tls(tls_cert, tls_key, tls_ca)}
    try:
        if head:
            _start_head(port, shards, replicas, host, node_timeout_ms, node_args)
        else:
            _join(address, token_file, node_args)
    except LineagerunError as err:
        raise click.ClickException(str(err)) from None


def _start_head(port, shards, replicas, host, node_timeout_ms, node_args) -> None:
    from lineagerun.control.cluster import ControlStoreCluster
    from lineagerun.node import launcher
    from lineagerun.transport.auth import new_token, write_token_file
    from lineagerun.transport.channels import check_bind
    from lineagerun.transport.tls import write_session_tls

    token = new_token()
    check_bind(host, token)
    session_dir = launcher.new_session_dir()
    write_token_file(session_dir / launcher.TOKEN_FILE_NAME, token)
    write_session_tls(session_dir, node_args["tls"])  # joining nodes and drivers read it there
    control = ControlStoreCluster(session_dir / CONTROL_STORE_DIR_NAME, shards=shards, replicas=replicas,
                                  token=token, host=host, coordinator_port=port, tls=node_args["tls"])
    started = []
    try:
        control.start()
        scheduler, scheduler_address = launcher.start_scheduler(
            session_dir, control.address, host=host, heartbeat_interval_ms=node_args["heartbeat_interval_ms"],
            node_timeout_ms=node_timeout_ms, tls=node_args["tls"])
        started.append(scheduler)
        node, ready = launcher.start_node(session_dir, control.address, scheduler_address, **node_args)
        started.append(node)
    except BaseException:
        for process in reversed(started):
            launcher.stop_process(process, force=True)
        control.stop()
        raise
    control.detach()
    launcher.write_json_atomic(session_dir / launcher.HEAD_FILE_NAME, {
        "address": control.address, "scheduler": scheduler_address, "host": host,
        "head_node_id": ready["node_id"], "started_by": "lineagerun start",
        "control_store_dir": str(session_dir / CONTROL_STORE_DIR_NAME),
        # What `status` checks servers against: the CA.
        "tls_cert": node_args["tls"].ca_file if node_args["tls"] else ""})
    click.echo(f"lineagerun head started (session {session_dir})")
    click.echo(f"  cluster address:  {control.address}")
    click.echo(f"  global scheduler: {scheduler_address}")
    click.echo(f"  head node:        {ready['node_id']} at {ready['address']}")
    click.echo(f"  token file:       {session_dir / launcher.TOKEN_FILE_NAME} (mode 0600)")
    if node_args["tls"] is not None:
        click.echo(f"  TLS:              every link; CA {node_args['tls'].ca_file}")
    click.echo("to join a node:     lineagerun start --address " + control.address
               + ("" if host in ("127.0.0.1", "localhost") else " --token-file <copy of the token file>"))
    click.echo(f"to connect:         lineagerun.init(address=\"{control.address}\")  (or \"auto\")")
    click.echo("status / stop:      lineagerun status / lineagerun stop")


def _find_cluster(address: str):
    """The local session of the cluster at ``address`` (None if not on this machine)."""
    from lineagerun.node import launcher

    for session_dir in launcher.cluster_sessions():
        try:
            head = launcher.read_head(session_dir)
        except (LineagerunError, OSError, ValueError):
            continue
        if address in (head.get("address"), str(session_dir)):
            return session_dir, head
    return None


def _join(address, token_file, node_args) -> None:
    from lineagerun.node import launcher
    from lineagerun.transport.auth import read_token_file, write_token_file
    from lineagerun.transport.tls import read_session_tls, write_session_tls

    found = _find_cluster(address)
    if found is not None:
        session_dir, head = found
        scheduler_address = head["scheduler"]
        if node_args["tls"] is None:
            node_args["tls"] = read_session_tls(session_dir)  # the cluster's own files
    else:
        # Another machine's cluster: a local session directory of our own,
        # with a copy of the token; the scheduler's address comes from the
        # environment (the head prints it).
        if not token_file:
            raise click.ClickException(f"no cluster at {address} on this machine: pass --token-file with a "
                                       "copy of the head's token file")
        token = read_token_file(token_file)
        session_dir = launcher.new_session_dir()
        write_token_file(session_dir / launcher.TOKEN_FILE_NAME, token)
        scheduler_address = os.environ.get("LINEAGERUN_SCHEDULER_ADDRESS", "")
        if not scheduler_address:
            raise click.ClickException("joining from another machine needs LINEAGERUN_SCHEDULER_ADDRESS "
                                       "(printed by start --head as 'global scheduler')")
        write_session_tls(session_dir, node_args["tls"])
        launcher.write_json_atomic(session_dir / launcher.HEAD_FILE_NAME, {
            "address": address, "scheduler": scheduler_address, "host": node_args["host"], "head_node_id": "",
            "started_by": "lineagerun start --address",
            "tls_cert": node_args["tls"].ca_file if node_args["tls"] else ""})
    node, ready = launcher.start_node(session_dir, address, scheduler_address, **node_args)
    click.echo(f"lineagerun node {ready['node_id']} joined {address} at {ready['address']} "
               f"(session {session_dir}, pid {node.pid})")


@click.command("stop")
@click.option("--force", is_flag=True, help="SIGKILL at once instead of SIGTERM with a grace period")
def stop(force: bool) -> None:
    """Stop every lineagerun cluster process this machine runs (by recorded pid)."""
    from lineagerun.control.cluster import stop_recorded
    from lineagerun.node import launcher

    # Only what `lineagerun start` started: a Cluster of a test or program
    # on this machine is its owner's to stop.
    sessions = [s for s in launcher.cluster_sessions() if _started_by_cli(s)]
    stopped = 0
    for session_dir in sessions:
        processes = launcher.recorded_processes(session_dir)
        # Nodes first (they write their death record), then the scheduler, then the store.
        for process in sorted(processes, key=lambda p: p.role != "node"):
            if process.alive():
                launcher.stop_process(process, force=force, grace_s=0.5 if force else launcher.STOP_GRACE_S)
                stopped += 1
        for ready in session_dir.glob("nodes/*/ready.json"):
            launcher.cleanup_node_store(session_dir, ready.parent.name)
        control_dir = session_dir / CONTROL_STORE_DIR_NAME
        if (control_dir / "cluster.json").exists():
            names, _ = stop_recorded(control_dir)
            stopped += len(names)
        (session_dir / launcher.HEAD_FILE_NAME).unlink(missing_ok=True)
    click.echo(f"stopped {stopped} process(es) of {len(sessions)} cluster session(s)")


def _started_by_cli(session_dir: Path) -> bool:
    from lineagerun.node import launcher

    try:
        return launcher.read_head(session_dir).get("started_by", "").startswith("lineagerun start")
    except (LineagerunError, OSError, ValueError):
        return False


@click.command("status")
@click.option("--address", default="auto", show_default=True, help="cluster address or session directory")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(address: str, as_json: bool) -> None:
    """Nodes (resources used/total, liveness), pending demand, control-store chains."""
    from lineagerun.node import launcher
    from lineagerun.transport.auth import read_token_file

    sessions = launcher.cluster_sessions()
    chosen = sessions[0] if address == "auto" and sessions else None
    if chosen is None:
        found = _find_cluster(address)
        chosen = found[0] if found else None
    if chosen is None:
        raise click.ClickException(f"no running cluster found for {address!r}; start one: lineagerun start --head")
    head = launcher.read_head(chosen)
    token = read_token_file(chosen / launcher.TOKEN_FILE_NAME)
    _use_session_tls(chosen)
    report = collect_status(head, token)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(render_status(report))


def _use_session_tls(session_dir: Path) -> None:
    """Talk to a TLS cluster's services with its CA (this process serves nothing)."""
    from lineagerun.transport.tls import configure_process_tls, read_session_tls

    try:
        config = read_session_tls(session_dir)
    except LineagerunError as err:
        raise click.ClickException(str(err)) from None
    configure_process_tls(config.client_only() if config is not None else None)


def collect_status(head: dict, token: str) -> dict:
    from lineagerun.control.cluster import coordinator_status
    from lineagerun.node import launcher

    report: dict = {"address": head["address"], "scheduler": head["scheduler"], "nodes": [], "chains": []}
    try:
        root_cert = Path(head["tls_cert"]).read_bytes() if head.get("tls_cert") else None
        view = launcher.scheduler_view(head["scheduler"], token, root_cert=root_cert)
        for node in view:
            report["nodes"].append({
                "node_id": node.node_id.hex(), "address": node.address, "alive": node.alive,
                "total": node.total.to_dict(), "available": node.available.to_dict(),
                "pending_tasks": node.queue_length, "last_heard_ms_ago": node.last_heard_ms_ago,
                "death_reason": node.death_reason})
    except LineagerunError as err:
        report["scheduler_error"] = str(err)
    try:
        config = coordinator_status(head["address"], token).get("config", {})
        for shard in config.get("shards", []):
            report["chains"].append({"shard": shard.get("shard", 0), "epoch": shard.get("epoch", 0),
                                     "chain": [r["replica_id"] for r in shard.get("chain", [])]})
    except LineagerunError as err:
        report["control_store_error"] = str(err)
    try:  # recovery counters (issue 5), read from the control store's events and attempts
        from lineagerun.state import recovery_summary

        if "control_store_error" in report:  # do not wait for it a second time
            report["recovery_error"] = "the control store is unreachable"
        else:
            report["recovery"] = recovery_summary(address=head["address"], token=token,
                                                  timeout_s=STATUS_READ_TIMEOUT_S)
    except LineagerunError as err:
        report["recovery_error"] = f"{type(err).__name__}: {err}"
    report["pending_tasks"] = sum(n["pending_tasks"] for n in report["nodes"] if n["alive"])
    return report


def render_status(report: dict) -> str:
    alive = [n for n in report["nodes"] if n["alive"]]
    lines = [f"cluster {report['address']} (global scheduler {report['scheduler']}): "
             f"{len(alive)} alive node(s), {len(report['nodes']) - len(alive)} dead"]
    if "scheduler_error" in report:
        lines.append(f"  global scheduler unreachable: {report['scheduler_error']}")
    for node in report["nodes"]:
        state = "ALIVE" if node["alive"] else f"DEAD ({node['death_reason'] or 'no reason'})"
        used = {k: round(v - node["available"].get(k, 0), 4) for k, v in node["total"].items()}
        usage = ", ".join(f"{k} {used[k]:g}/{v:g}" for k, v in sorted(node["total"].items())) or "no resources"
        lines.append(f"  node {node['node_id'][:16]} {node['address']:<21} {state:<6} {usage}  "
                     f"pending {node['pending_tasks']}")
    lines.append(f"pending demand: {report['pending_tasks']} task(s) queued on alive nodes")
    if "control_store_error" in report:
        lines.append(f"control store unreachable: {report['control_store_error']}")
    for chain in report["chains"]:
        lines.append(f"control store shard {chain['shard']}: epoch {chain['epoch']}  chain "
                     f"{' -> '.join(chain['chain']) or '(not formed)'}")
    if "recovery" in report:
        from lineagerun.state import recovery_lines

        lines.extend(recovery_lines(report["recovery"]))
    elif "recovery_error" in report:
        lines.append(f"recovery counters unavailable: {report['recovery_error']}")
    return "\n".join(lines)


@click.group()
def main() -> None:
    """lineagerun cluster commands (also: lineagerun start/stop/status)."""


main.add_command(start)
main.add_command(stop)
main.add_command(status)

if __name__ == "__main__":
    main()
