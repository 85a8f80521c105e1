"""The IDENTITY file of a replica directory: which cluster, shard and replica
wrote it. Plain ``name=value`` lines (no protobuf, no pickle), written
atomically. A replica refuses a directory whose IDENTITY names another shard
or replica id (``ShardMismatchError``), and the core refuses one of another
cluster, so a mistyped path never mixes two shards' data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lineagerun.exceptions import ShardMismatchError

IDENTITY_FILE_NAME = "IDENTITY"


@dataclass(frozen=True)
class Identity:
    cluster_id: str
    shard: int
    replica_id: str


def read_identity(directory: str | os.PathLike) -> Identity | None:
    path = Path(directory) / IDENTITY_FILE_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        return Identity(fields["cluster_id"], int(fields["shard"]), fields["replica_id"])
    except (KeyError, ValueError):
        raise ShardMismatchError(f"{path} is not a replica IDENTITY file (fields cluster_id, shard, replica_id); "
                                 f"refusing to use this directory") from None


def check_identity(directory: str | os.PathLike, shard: int, replica_id: str) -> Identity | None:
    """The directory's identity, if it has one, after checking it is ours."""
    identity = read_identity(directory)
    if identity is not None and (identity.shard != shard or identity.replica_id != replica_id):
        raise ShardMismatchError(
            f"directory {directory} belongs to replica {identity.replica_id!r} of shard {identity.shard} "
            f"(cluster {identity.cluster_id!r}), not replica {replica_id!r} of shard {shard}; "
            f"pass that replica's own --dir or fix --shard/--replica-id")
    return identity


def write_identity(directory: str | os.PathLike, cluster_id: str, shard: int, replica_id: str) -> None:
    path = Path(directory) / IDENTITY_FILE_NAME
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(f"cluster_id={cluster_id}\nshard={shard}\nreplica_id={replica_id}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
