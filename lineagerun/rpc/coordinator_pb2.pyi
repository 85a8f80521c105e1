from lineagerun.rpc import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("replica_id", "shard", "address", "epoch", "applied_seq", "applied_epoch", "caught_up", "cluster_id")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    APPLIED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    shard: int
    address: str
    epoch: int
    applied_seq: int
    applied_epoch: int
    caught_up: bool
    cluster_id: str
    def __init__(self, replica_id: _Optional[str] = ..., shard: _Optional[int] = ..., address: _Optional[str] = ..., epoch: _Optional[int] = ..., applied_seq: _Optional[int] = ..., applied_epoch: _Optional[int] = ..., caught_up: _Optional[bool] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("config", "lease_ms", "must_join")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    MUST_JOIN_FIELD_NUMBER: _ClassVar[int]
    config: _common_pb2.ChainConfig
    lease_ms: int
    must_join: bool
    def __init__(self, config: _Optional[_Union[_common_pb2.ChainConfig, _Mapping]] = ..., lease_ms: _Optional[int] = ..., must_join: _Optional[bool] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("replica_id", "shard", "address", "applied_seq", "applied_epoch", "cluster_id")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    APPLIED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    shard: int
    address: str
    applied_seq: int
    applied_epoch: int
    cluster_id: str
    def __init__(self, replica_id: _Optional[str] = ..., shard: _Optional[int] = ..., address: _Optional[str] = ..., applied_seq: _Optional[int] = ..., applied_epoch: _Optional[int] = ..., cluster_id: _Optional[str] = ...) -> None: ...

class JoinReply(_message.Message):
    __slots__ = ("config", "cluster_id", "retry_later", "retry_after_ms")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    RETRY_LATER_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    config: _common_pb2.ChainConfig
    cluster_id: str
    retry_later: bool
    retry_after_ms: int
    def __init__(self, config: _Optional[_Union[_common_pb2.ChainConfig, _Mapping]] = ..., cluster_id: _Optional[str] = ..., retry_later: _Optional[bool] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class CoordinatorStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReplicaHealth(_message.Message):
    __slots__ = ("replica_id", "shard", "address", "state", "ms_since_heartbeat", "applied_seq")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MS_SINCE_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    shard: int
    address: str
    state: str
    ms_since_heartbeat: int
    applied_seq: int
    def __init__(self, replica_id: _Optional[str] = ..., shard: _Optional[int] = ..., address: _Optional[str] = ..., state: _Optional[str] = ..., ms_since_heartbeat: _Optional[int] = ..., applied_seq: _Optional[int] = ...) -> None: ...

class CoordinatorStatus(_message.Message):
    __slots__ = ("config", "replicas", "heartbeat_interval_ms", "failure_timeout_ms")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    config: _common_pb2.ClusterConfig
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaHealth]
    heartbeat_interval_ms: int
    failure_timeout_ms: int
    def __init__(self, config: _Optional[_Union[_common_pb2.ClusterConfig, _Mapping]] = ..., replicas: _Optional[_Iterable[_Union[ReplicaHealth, _Mapping]]] = ..., heartbeat_interval_ms: _Optional[int] = ..., failure_timeout_ms: _Optional[int] = ...) -> None: ...

class WatchConfigRequest(_message.Message):
    __slots__ = ("known_version",)
    KNOWN_VERSION_FIELD_NUMBER: _ClassVar[int]
    known_version: int
    def __init__(self, known_version: _Optional[int] = ...) -> None: ...
