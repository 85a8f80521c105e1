from lineagerun.rpc import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Op(_message.Message):
    __slots__ = ("put", "delete", "cas")
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    CAS_FIELD_NUMBER: _ClassVar[int]
    put: Put
    delete: Delete
    cas: CompareAndSet
    def __init__(self, put: _Optional[_Union[Put, _Mapping]] = ..., delete: _Optional[_Union[Delete, _Mapping]] = ..., cas: _Optional[_Union[CompareAndSet, _Mapping]] = ...) -> None: ...

class Put(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class Delete(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    def __init__(self, key: _Optional[bytes] = ...) -> None: ...

class CompareAndSet(_message.Message):
    __slots__ = ("key", "expected", "expect_absent", "new_value", "delete_on_match")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    EXPECT_ABSENT_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_FIELD_NUMBER: _ClassVar[int]
    DELETE_ON_MATCH_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    expected: bytes
    expect_absent: bool
    new_value: bytes
    delete_on_match: bool
    def __init__(self, key: _Optional[bytes] = ..., expected: _Optional[bytes] = ..., expect_absent: _Optional[bool] = ..., new_value: _Optional[bytes] = ..., delete_on_match: _Optional[bool] = ...) -> None: ...

class OpResult(_message.Message):
    __slots__ = ("ok", "present", "current")
    OK_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    present: bool
    current: bytes
    def __init__(self, ok: _Optional[bool] = ..., present: _Optional[bool] = ..., current: _Optional[bytes] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("shard", "epoch", "client_id", "client_seq", "client_acked_below", "ops", "answer_at_tail")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SEQ_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ACKED_BELOW_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_AT_TAIL_FIELD_NUMBER: _ClassVar[int]
    shard: int
    epoch: int
    client_id: str
    client_seq: int
    client_acked_below: int
    ops: _containers.RepeatedCompositeFieldContainer[Op]
    answer_at_tail: bool
    def __init__(self, shard: _Optional[int] = ..., epoch: _Optional[int] = ..., client_id: _Optional[str] = ..., client_seq: _Optional[int] = ..., client_acked_below: _Optional[int] = ..., ops: _Optional[_Iterable[_Union[Op, _Mapping]]] = ..., answer_at_tail: _Optional[bool] = ...) -> None: ...

class WriteReply(_message.Message):
    __slots__ = ("epoch", "seq", "results")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    seq: int
    results: _containers.RepeatedCompositeFieldContainer[OpResult]
    def __init__(self, epoch: _Optional[int] = ..., seq: _Optional[int] = ..., results: _Optional[_Iterable[_Union[OpResult, _Mapping]]] = ...) -> None: ...

class StreamedWrite(_message.Message):
    __slots__ = ("request_id", "request")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    request: WriteRequest
    def __init__(self, request_id: _Optional[int] = ..., request: _Optional[_Union[WriteRequest, _Mapping]] = ...) -> None: ...

class StreamedWriteReply(_message.Message):
    __slots__ = ("request_id", "reply", "error_code", "error_message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    reply: WriteReply
    error_code: _common_pb2.ErrorCode
    error_message: str
    def __init__(self, request_id: _Optional[int] = ..., reply: _Optional[_Union[WriteReply, _Mapping]] = ..., error_code: _Optional[_Union[_common_pb2.ErrorCode, str]] = ..., error_message: _Optional[str] = ...) -> None: ...

class AnswersRequest(_message.Message):
    __slots__ = ("shard", "client_id")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    shard: int
    client_id: str
    def __init__(self, shard: _Optional[int] = ..., client_id: _Optional[str] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("shard", "min_epoch", "keys")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    MIN_EPOCH_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    shard: int
    min_epoch: int
    keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, shard: _Optional[int] = ..., min_epoch: _Optional[int] = ..., keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ReadReply(_message.Message):
    __slots__ = ("epoch", "seq", "values")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    seq: int
    values: _containers.RepeatedCompositeFieldContainer[MaybeValue]
    def __init__(self, epoch: _Optional[int] = ..., seq: _Optional[int] = ..., values: _Optional[_Iterable[_Union[MaybeValue, _Mapping]]] = ...) -> None: ...

class MaybeValue(_message.Message):
    __slots__ = ("present", "value")
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    present: bool
    value: bytes
    def __init__(self, present: _Optional[bool] = ..., value: _Optional[bytes] = ...) -> None: ...

class ScanRequest(_message.Message):
    __slots__ = ("shard", "min_epoch", "prefix", "start_after", "limit", "keys_only")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    MIN_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    START_AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    KEYS_ONLY_FIELD_NUMBER: _ClassVar[int]
    shard: int
    min_epoch: int
    prefix: bytes
    start_after: bytes
    limit: int
    keys_only: bool
    def __init__(self, shard: _Optional[int] = ..., min_epoch: _Optional[int] = ..., prefix: _Optional[bytes] = ..., start_after: _Optional[bytes] = ..., limit: _Optional[int] = ..., keys_only: _Optional[bool] = ...) -> None: ...

class ScanReply(_message.Message):
    __slots__ = ("epoch", "seq", "items", "more")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    seq: int
    items: _containers.RepeatedCompositeFieldContainer[KeyValue]
    more: bool
    def __init__(self, epoch: _Optional[int] = ..., seq: _Optional[int] = ..., items: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class KeyValue(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    value: bytes
    def __init__(self, key: _Optional[bytes] = ..., value: _Optional[bytes] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("shard", "min_epoch", "prefix", "from_seq")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    MIN_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    shard: int
    min_epoch: int
    prefix: bytes
    from_seq: int
    def __init__(self, shard: _Optional[int] = ..., min_epoch: _Optional[int] = ..., prefix: _Optional[bytes] = ..., from_seq: _Optional[int] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("key", "deleted", "value", "seq")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    deleted: bool
    value: bytes
    seq: int
    def __init__(self, key: _Optional[bytes] = ..., deleted: _Optional[bool] = ..., value: _Optional[bytes] = ..., seq: _Optional[int] = ...) -> None: ...

class ChangeBatch(_message.Message):
    __slots__ = ("epoch", "changes", "committed_seq", "compacted_seq")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    COMPACTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    committed_seq: int
    compacted_seq: int
    def __init__(self, epoch: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., committed_seq: _Optional[int] = ..., compacted_seq: _Optional[int] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("seq", "epoch", "client_id", "client_seq", "client_acked_below", "mutations", "results", "answer_at_tail")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SEQ_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ACKED_BELOW_FIELD_NUMBER: _ClassVar[int]
    MUTATIONS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ANSWER_AT_TAIL_FIELD_NUMBER: _ClassVar[int]
    seq: int
    epoch: int
    client_id: str
    client_seq: int
    client_acked_below: int
    mutations: _containers.RepeatedCompositeFieldContainer[Mutation]
    results: _containers.RepeatedCompositeFieldContainer[OpResult]
    answer_at_tail: bool
    def __init__(self, seq: _Optional[int] = ..., epoch: _Optional[int] = ..., client_id: _Optional[str] = ..., client_seq: _Optional[int] = ..., client_acked_below: _Optional[int] = ..., mutations: _Optional[_Iterable[_Union[Mutation, _Mapping]]] = ..., results: _Optional[_Iterable[_Union[OpResult, _Mapping]]] = ..., answer_at_tail: _Optional[bool] = ...) -> None: ...

class Mutation(_message.Message):
    __slots__ = ("key", "deleted", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    deleted: bool
    value: bytes
    def __init__(self, key: _Optional[bytes] = ..., deleted: _Optional[bool] = ..., value: _Optional[bytes] = ...) -> None: ...

class ForwardBatch(_message.Message):
    __slots__ = ("shard", "epoch", "sender_id", "entries", "committed_seq", "snapshot_items", "snapshot_begin", "snapshot_end", "snapshot_seq", "snapshot_epoch")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SENDER_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ITEMS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_BEGIN_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_END_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_SEQ_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    shard: int
    epoch: int
    sender_id: str
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    committed_seq: int
    snapshot_items: _containers.RepeatedCompositeFieldContainer[KeyValue]
    snapshot_begin: bool
    snapshot_end: bool
    snapshot_seq: int
    snapshot_epoch: int
    def __init__(self, shard: _Optional[int] = ..., epoch: _Optional[int] = ..., sender_id: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ..., committed_seq: _Optional[int] = ..., snapshot_items: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., snapshot_begin: _Optional[bool] = ..., snapshot_end: _Optional[bool] = ..., snapshot_seq: _Optional[int] = ..., snapshot_epoch: _Optional[int] = ...) -> None: ...

class ForwardAck(_message.Message):
    __slots__ = ("epoch", "applied_seq", "applied_epoch", "committed_seq", "need_snapshot")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    APPLIED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    NEED_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    applied_seq: int
    applied_epoch: int
    committed_seq: int
    need_snapshot: bool
    def __init__(self, epoch: _Optional[int] = ..., applied_seq: _Optional[int] = ..., applied_epoch: _Optional[int] = ..., committed_seq: _Optional[int] = ..., need_snapshot: _Optional[bool] = ...) -> None: ...

class ConfigUpdate(_message.Message):
    __slots__ = ("config", "lease_ms")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    config: _common_pb2.ChainConfig
    lease_ms: int
    def __init__(self, config: _Optional[_Union[_common_pb2.ChainConfig, _Mapping]] = ..., lease_ms: _Optional[int] = ...) -> None: ...

class ConfigAck(_message.Message):
    __slots__ = ("epoch",)
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    def __init__(self, epoch: _Optional[int] = ...) -> None: ...

class ChainConfigRequest(_message.Message):
    __slots__ = ("shard",)
    SHARD_FIELD_NUMBER: _ClassVar[int]
    shard: int
    def __init__(self, shard: _Optional[int] = ...) -> None: ...

class ReplicaStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReplicaStatus(_message.Message):
    __slots__ = ("replica_id", "shard", "epoch", "role", "applied_seq", "applied_epoch", "committed_seq", "lease_valid", "num_keys_estimate", "cluster_id")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    APPLIED_EPOCH_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_SEQ_FIELD_NUMBER: _ClassVar[int]
    LEASE_VALID_FIELD_NUMBER: _ClassVar[int]
    NUM_KEYS_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    shard: int
    epoch: int
    role: str
    applied_seq: int
    applied_epoch: int
    committed_seq: int
    lease_valid: bool
    num_keys_estimate: int
    cluster_id: str
    def __init__(self, replica_id: _Optional[str] = ..., shard: _Optional[int] = ..., epoch: _Optional[int] = ..., role: _Optional[str] = ..., applied_seq: _Optional[int] = ..., applied_epoch: _Optional[int] = ..., committed_seq: _Optional[int] = ..., lease_valid: _Optional[bool] = ..., num_keys_estimate: _Optional[int] = ..., cluster_id: _Optional[str] = ...) -> None: ...
