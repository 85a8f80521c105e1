"""``lineagerun control-store start|status|stop``: run a control store as
detached processes and look at it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from lineagerun.exceptions import LineagerunError


@click.group("control-store")
def control_store() -> None:
    """Run and inspect a standalone control store (sharded, chain-replicated)."""


@control_store.command("start")
@click.option("--shards", default=1, show_default=True, type=click.IntRange(1, 1024), help="number of shards")
@click.option("--replicas", default=3, show_default=True, type=click.IntRange(1, 16), help="replicas per shard")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="session directory (token, logs, RocksDB directories)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="coordinator port (0 picks a free one)")
@click.option("--durability", default="wal", show_default=True, type=click.Choice(["wal", "fsync"]),
              help="wal: acknowledged writes are in every replica's write-ahead log; fsync: also fsynced")
def start(shards: int, replicas: int, directory: Path, host: str, port: int, durability: str) -> None:
    """Start a coordinator and SHARDS x REPLICAS replicas in the background."""
    from lineagerun.control.cluster import ControlStoreCluster, load_record, recorded_processes

    if (directory / "cluster.json").exists():
        running = [p.name for p in recorded_processes(load_record(directory)) if p.alive()]
        if running:
            raise click.ClickException(f"a control store is already running in {directory} ({', '.join(running)}); "
                                       f"stop it first: lineagerun control-store stop --dir {directory}")
    cluster = ControlStoreCluster(directory, shards, replicas, host=host, durability=durability,
                                  coordinator_port=port)
    try:
        cluster.start()
    except LineagerunError as err:
        raise click.ClickException(str(err)) from None
    cluster.detach()
    click.echo(f"control store running: {shards} shard(s) x {replicas} replica(s), durability {durability}")
    click.echo(f"coordinator address: {cluster.address}")
    click.echo(f"token file:          {cluster.token_file}")
    click.echo(f"logs:                {directory}/coordinator/process.log, {directory}/shard-*/replica-*/process.log")
    click.echo(f"status:              lineagerun control-store status --dir {directory}")
    click.echo(f"stop:                lineagerun control-store stop --dir {directory}")


def _collect_status(address: str, token: str) -> dict:
    from lineagerun.control.cluster import coordinator_status, replica_status

    status = coordinator_status(address, token)
    replicas = {}
    for health in status.get("replicas", []):
        if health.get("state") == "dead":
            continue
        try:
            replicas[health["replica_id"]] = replica_status(health["address"], token)
        except LineagerunError as err:
            replicas[health["replica_id"]] = {"error": str(err)}
    return {"address": address, "coordinator": status, "replica_status": replicas}


def _render(status: dict) -> str:
    coordinator = status["coordinator"]
    config = coordinator.get("config", {})
    lines = [f"control store at {status['address']}: cluster {config.get('cluster_id', '?')}, "
             f"{config.get('num_shards', 0)} shard(s), config version {config.get('version', 0)}, "
             f"heartbeat {coordinator.get('heartbeat_interval_ms', '?')} ms, "
             f"failure timeout {coordinator.get('failure_timeout_ms', '?')} ms"]
    health_by_id = {h["replica_id"]: h for h in coordinator.get("replicas", [])}
    for shard in config.get("shards", []):
        chain = [r["replica_id"] for r in shard.get("chain", [])]
        joining = shard.get("joining", {}).get("replica_id") or "-"
        lines.append(f"shard {shard.get('shard', 0)}: epoch {shard.get('epoch', 0)}  "
                     f"chain {' -> '.join(chain) or '(not formed)'}  joining {joining}")
        ids = chain + ([joining] if joining != "-" else [])
        ids += [h for h, v in health_by_id.items() if int(v.get("shard", 0)) == int(shard.get("shard", 0))
                and h not in ids]
        for replica_id in ids:
            health = health_by_id.get(replica_id, {})
            own = status["replica_status"].get(replica_id, {})
            detail = (f"error: {own['error']}" if "error" in own else
                      f"role {own.get('role', '?')}, applied {own.get('applied_seq', '?')}, "
                      f"committed {own.get('committed_seq', '?')}, lease {'ok' if own.get('lease_valid') else 'no'}")
            lines.append(f"  {replica_id:<8} {health.get('state', '?'):<8} {health.get('address', '?'):<21} "
                         f"heartbeat {health.get('ms_since_heartbeat', '?')} ms ago, {detail}")
    return "\n".join(lines)


@control_store.command("status")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="session directory given to `start`")
@click.option("--address", help="coordinator host:port (instead of --dir)")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path), help="with --address")
@click.option("--json", "as_json", is_flag=True, help="print the raw status as JSON")
def status(directory: Path | None, address: str | None, token_file: Path | None, as_json: bool) -> None:
    """Each shard's chain (head -> tail), epoch, and every replica's health."""
    from lineagerun.control.cluster import load_record
    from lineagerun.transport.auth import read_token_file

    try:
        if directory is not None:
            record = load_record(directory)
            address = address or (record.get("coordinator") or {}).get("address")
            token_file = token_file or Path(record["token_file"])
        if not address or token_file is None:
            raise click.UsageError("pass --dir DIR, or --address HOST:PORT and --token-file FILE")
        result = _collect_status(address, read_token_file(token_file))
    except LineagerunError as err:
        raise click.ClickException(f"cannot read the control store's status: {err}") from None
    click.echo(json.dumps(result, indent=2) if as_json else _render(result))


@control_store.command("stop")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="session directory given to `start`")
def stop(directory: Path) -> None:
    """Stop every process recorded in DIR/cluster.json (SIGTERM, then SIGKILL)."""
    from lineagerun.control.cluster import stop_recorded

    try:
        stopped, gone = stop_recorded(directory)
    except LineagerunError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    if gone:
        click.echo(f"already gone: {', '.join(gone)}")
