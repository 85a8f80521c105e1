"""The coordinator's one durable file, DIR/config.pb (a ClusterConfig
protobuf), and the conversion between the core's values and the wire messages.

Writes go to a temp file, are fsynced, renamed over config.pb and the
directory is fsynced, so a crash leaves either the old or the new file. A file
that does not parse or does not describe a valid configuration is an error
the operator must look at: replacing it would forget epochs and the cluster
id, and replicas would then be fenced out of their own cluster.
"""

from __future__ import annotations

import os
from pathlib import Path

from google.protobuf.message import DecodeError

from lineagerun.core.chain.coordinator_events import ChainConfig, ClusterConfig, ReplicaInfo
from lineagerun.exceptions import ConfigurationError
from lineagerun.rpc import common_pb2

CONFIG_FILE_NAME = "config.pb"
_TEMP_SUFFIX = ".tmp"
# A config holds a few hundred bytes per replica; anything near this is not ours.
CONFIG_FILE_SIZE_MAX_BYTES = 64 * 1024 * 1024


class CorruptConfigError(ConfigurationError):
    """config.pb exists but cannot be the coordinator's configuration."""


# ---------------------------------------------------------------- conversion


def replica_to_proto(replica: ReplicaInfo) -> common_pb2.ReplicaInfo:
    return common_pb2.ReplicaInfo(replica_id=replica.replica_id, address=replica.address)


def chain_to_proto(chain: ChainConfig) -> common_pb2.ChainConfig:
    msg = common_pb2.ChainConfig(shard=chain.shard, epoch=chain.epoch,
                                 chain=[replica_to_proto(r) for r in chain.chain])
    if chain.joining is not None:
        msg.joining.CopyFrom(replica_to_proto(chain.joining))
    return msg


def config_to_proto(config: ClusterConfig) -> common_pb2.ClusterConfig:
    return common_pb2.ClusterConfig(cluster_id=config.cluster_id, num_shards=config.num_shards,
                                    shards=[chain_to_proto(c) for c in config.shards], version=config.version)


def chain_from_proto(msg: common_pb2.ChainConfig) -> ChainConfig:
    joining = None
    if msg.HasField("joining") and msg.joining.replica_id:
        joining = ReplicaInfo(msg.joining.replica_id, msg.joining.address)
    chain = tuple(ReplicaInfo(r.replica_id, r.address) for r in msg.chain)
    return ChainConfig(shard=msg.shard, epoch=msg.epoch, chain=chain, joining=joining)


def config_from_proto(msg: common_pb2.ClusterConfig) -> ClusterConfig:
    return ClusterConfig(cluster_id=msg.cluster_id, num_shards=msg.num_shards,
                         shards=tuple(chain_from_proto(c) for c in msg.shards), version=msg.version)


# ---------------------------------------------------------------- file


class ConfigStore:
    """DIR/config.pb."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.path = self.directory / CONFIG_FILE_NAME

    def load(self) -> ClusterConfig | None:
        """The persisted configuration, or None on a directory never used.
        Raises CorruptConfigError for anything else than a valid config."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return None
        if size > CONFIG_FILE_SIZE_MAX_BYTES:
            raise self._corrupt(f"it is {size} bytes, more than a configuration can be")
        data = self.path.read_bytes()
        msg = common_pb2.ClusterConfig()
        try:
            msg.ParseFromString(data)
        except DecodeError as err:
            raise self._corrupt(f"it is not a ClusterConfig protobuf ({err})") from None
        config = config_from_proto(msg)
        try:
            config.check()
        except ConfigurationError as err:
            raise self._corrupt(str(err)) from None
        return config

    def save(self, config: ClusterConfig) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = config_to_proto(config).SerializeToString()
        temp = self.path.with_name(CONFIG_FILE_NAME + _TEMP_SUFFIX)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, self.path)
        fsync_directory(self.directory)

    def _corrupt(self, why: str) -> CorruptConfigError:
        return CorruptConfigError(
            f"{self.path} is corrupt: {why}. The coordinator will not replace it, because that would "
            f"forget the cluster id and epochs. Restore it from a backup, or remove the whole cluster "
            f"directory to start a new cluster.")


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path: Path, text: str) -> None:
    """For small marker files (``ready``): readers see all of it or nothing."""
    temp = path.with_name(path.name + _TEMP_SUFFIX)
    temp.write_text(text)
    os.replace(temp, path)
