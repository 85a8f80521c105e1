from lineagerun.rpc import lineage_pb2 as _lineage_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlacementOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLACEMENT_OUTCOME_UNSPECIFIED: _ClassVar[PlacementOutcome]
    PLACEMENT_PLACED: _ClassVar[PlacementOutcome]
    PLACEMENT_INFEASIBLE: _ClassVar[PlacementOutcome]
    PLACEMENT_RETRY: _ClassVar[PlacementOutcome]
PLACEMENT_OUTCOME_UNSPECIFIED: PlacementOutcome
PLACEMENT_PLACED: PlacementOutcome
PLACEMENT_INFEASIBLE: PlacementOutcome
PLACEMENT_RETRY: PlacementOutcome

class ObjectSize(_message.Message):
    __slots__ = ("object_id", "size_bytes")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    size_bytes: int
    def __init__(self, object_id: _Optional[bytes] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class LoadReport(_message.Message):
    __slots__ = ("node_id", "incarnation", "address", "resources_total", "resources_available", "queue_length", "mean_task_ms", "sealed_objects", "evicted_objects", "objects_reset")
    class ResourcesTotalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ResourcesAvailableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MEAN_TASK_MS_FIELD_NUMBER: _ClassVar[int]
    SEALED_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    EVICTED_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_RESET_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    incarnation: int
    address: str
    resources_total: _containers.ScalarMap[str, int]
    resources_available: _containers.ScalarMap[str, int]
    queue_length: int
    mean_task_ms: float
    sealed_objects: _containers.RepeatedCompositeFieldContainer[ObjectSize]
    evicted_objects: _containers.RepeatedScalarFieldContainer[bytes]
    objects_reset: bool
    def __init__(self, node_id: _Optional[bytes] = ..., incarnation: _Optional[int] = ..., address: _Optional[str] = ..., resources_total: _Optional[_Mapping[str, int]] = ..., resources_available: _Optional[_Mapping[str, int]] = ..., queue_length: _Optional[int] = ..., mean_task_ms: _Optional[float] = ..., sealed_objects: _Optional[_Iterable[_Union[ObjectSize, _Mapping]]] = ..., evicted_objects: _Optional[_Iterable[bytes]] = ..., objects_reset: _Optional[bool] = ...) -> None: ...

class LoadReportReply(_message.Message):
    __slots__ = ("status", "reason", "heartbeat_interval_ms", "node_timeout_ms")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[LoadReportReply.Status]
        ACCEPTED: _ClassVar[LoadReportReply.Status]
        FENCED: _ClassVar[LoadReportReply.Status]
        REFUSED: _ClassVar[LoadReportReply.Status]
    STATUS_UNSPECIFIED: LoadReportReply.Status
    ACCEPTED: LoadReportReply.Status
    FENCED: LoadReportReply.Status
    REFUSED: LoadReportReply.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    NODE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    status: LoadReportReply.Status
    reason: str
    heartbeat_interval_ms: int
    node_timeout_ms: int
    def __init__(self, status: _Optional[_Union[LoadReportReply.Status, str]] = ..., reason: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ..., node_timeout_ms: _Optional[int] = ...) -> None: ...

class ArgumentLocation(_message.Message):
    __slots__ = ("object_id", "size_bytes", "locations")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    size_bytes: int
    locations: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, object_id: _Optional[bytes] = ..., size_bytes: _Optional[int] = ..., locations: _Optional[_Iterable[bytes]] = ...) -> None: ...

class TaskToPlace(_message.Message):
    __slots__ = ("task_id", "resources", "strategy", "args")
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    resources: _containers.ScalarMap[str, int]
    strategy: _lineage_pb2.SchedulingStrategy
    args: _containers.RepeatedCompositeFieldContainer[ArgumentLocation]
    def __init__(self, task_id: _Optional[bytes] = ..., resources: _Optional[_Mapping[str, int]] = ..., strategy: _Optional[_Union[_lineage_pb2.SchedulingStrategy, _Mapping]] = ..., args: _Optional[_Iterable[_Union[ArgumentLocation, _Mapping]]] = ...) -> None: ...

class PlaceRequest(_message.Message):
    __slots__ = ("tasks", "requester_node_id", "only_if_available")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ONLY_IF_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskToPlace]
    requester_node_id: bytes
    only_if_available: bool
    def __init__(self, tasks: _Optional[_Iterable[_Union[TaskToPlace, _Mapping]]] = ..., requester_node_id: _Optional[bytes] = ..., only_if_available: _Optional[bool] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("task_id", "outcome", "node_id", "address", "estimated_wait_ms", "infeasible_kind", "reason", "retry_after_ms")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    INFEASIBLE_KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    outcome: PlacementOutcome
    node_id: bytes
    address: str
    estimated_wait_ms: float
    infeasible_kind: str
    reason: str
    retry_after_ms: int
    def __init__(self, task_id: _Optional[bytes] = ..., outcome: _Optional[_Union[PlacementOutcome, str]] = ..., node_id: _Optional[bytes] = ..., address: _Optional[str] = ..., estimated_wait_ms: _Optional[float] = ..., infeasible_kind: _Optional[str] = ..., reason: _Optional[str] = ..., retry_after_ms: _Optional[int] = ...) -> None: ...

class PlaceReply(_message.Message):
    __slots__ = ("placements",)
    PLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    placements: _containers.RepeatedCompositeFieldContainer[Placement]
    def __init__(self, placements: _Optional[_Iterable[_Union[Placement, _Mapping]]] = ...) -> None: ...

class ClusterViewRequest(_message.Message):
    __slots__ = ("include_dead",)
    INCLUDE_DEAD_FIELD_NUMBER: _ClassVar[int]
    include_dead: bool
    def __init__(self, include_dead: _Optional[bool] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("node_id", "incarnation", "address", "alive", "resources_total", "resources_available", "queue_length", "mean_task_ms", "last_heard_ms_ago", "died_ms", "death_reason")
    class ResourcesTotalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ResourcesAvailableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MEAN_TASK_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARD_MS_AGO_FIELD_NUMBER: _ClassVar[int]
    DIED_MS_FIELD_NUMBER: _ClassVar[int]
    DEATH_REASON_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    incarnation: int
    address: str
    alive: bool
    resources_total: _containers.ScalarMap[str, int]
    resources_available: _containers.ScalarMap[str, int]
    queue_length: int
    mean_task_ms: float
    last_heard_ms_ago: int
    died_ms: int
    death_reason: str
    def __init__(self, node_id: _Optional[bytes] = ..., incarnation: _Optional[int] = ..., address: _Optional[str] = ..., alive: _Optional[bool] = ..., resources_total: _Optional[_Mapping[str, int]] = ..., resources_available: _Optional[_Mapping[str, int]] = ..., queue_length: _Optional[int] = ..., mean_task_ms: _Optional[float] = ..., last_heard_ms_ago: _Optional[int] = ..., died_ms: _Optional[int] = ..., death_reason: _Optional[str] = ...) -> None: ...

class ClusterViewReply(_message.Message):
    __slots__ = ("nodes", "heartbeat_interval_ms", "node_timeout_ms", "started_ms")
    NODES_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    NODE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeStatus]
    heartbeat_interval_ms: int
    node_timeout_ms: int
    started_ms: int
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeStatus, _Mapping]]] = ..., heartbeat_interval_ms: _Optional[int] = ..., node_timeout_ms: _Optional[int] = ..., started_ms: _Optional[int] = ...) -> None: ...
