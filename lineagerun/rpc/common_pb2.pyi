from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_UNSPECIFIED: _ClassVar[ErrorCode]
    UNAUTHENTICATED: _ClassVar[ErrorCode]
    BAD_REQUEST: _ClassVar[ErrorCode]
    NOT_FOUND: _ClassVar[ErrorCode]
    VALUE_TOO_LARGE: _ClassVar[ErrorCode]
    WRONG_SHARD: _ClassVar[ErrorCode]
    NOT_HEAD: _ClassVar[ErrorCode]
    NOT_TAIL: _ClassVar[ErrorCode]
    STALE_EPOCH: _ClassVar[ErrorCode]
    UNAVAILABLE: _ClassVar[ErrorCode]
    SHARD_MISMATCH: _ClassVar[ErrorCode]
    INTERNAL: _ClassVar[ErrorCode]
    TIMEOUT: _ClassVar[ErrorCode]
ERROR_UNSPECIFIED: ErrorCode
UNAUTHENTICATED: ErrorCode
BAD_REQUEST: ErrorCode
NOT_FOUND: ErrorCode
VALUE_TOO_LARGE: ErrorCode
WRONG_SHARD: ErrorCode
NOT_HEAD: ErrorCode
NOT_TAIL: ErrorCode
STALE_EPOCH: ErrorCode
UNAVAILABLE: ErrorCode
SHARD_MISMATCH: ErrorCode
INTERNAL: ErrorCode
TIMEOUT: ErrorCode

class ReplicaInfo(_message.Message):
    __slots__ = ("replica_id", "address")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    address: str
    def __init__(self, replica_id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class ChainConfig(_message.Message):
    __slots__ = ("shard", "epoch", "chain", "joining")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    JOINING_FIELD_NUMBER: _ClassVar[int]
    shard: int
    epoch: int
    chain: _containers.RepeatedCompositeFieldContainer[ReplicaInfo]
    joining: ReplicaInfo
    def __init__(self, shard: _Optional[int] = ..., epoch: _Optional[int] = ..., chain: _Optional[_Iterable[_Union[ReplicaInfo, _Mapping]]] = ..., joining: _Optional[_Union[ReplicaInfo, _Mapping]] = ...) -> None: ...

class ClusterConfig(_message.Message):
    __slots__ = ("cluster_id", "num_shards", "shards", "version")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_SHARDS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    num_shards: int
    shards: _containers.RepeatedCompositeFieldContainer[ChainConfig]
    version: int
    def __init__(self, cluster_id: _Optional[str] = ..., num_shards: _Optional[int] = ..., shards: _Optional[_Iterable[_Union[ChainConfig, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...
