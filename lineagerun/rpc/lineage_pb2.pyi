from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    PENDING_ARGS: _ClassVar[TaskState]
    PENDING_NODE: _ClassVar[TaskState]
    SUBMITTED_TO_WORKER: _ClassVar[TaskState]
    RUNNING: _ClassVar[TaskState]
    FINISHED: _ClassVar[TaskState]
    FAILED: _ClassVar[TaskState]
    CANCELLED: _ClassVar[TaskState]

class AttemptReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_REASON_UNSPECIFIED: _ClassVar[AttemptReason]
    FIRST_RUN: _ClassVar[AttemptReason]
    RETRY: _ClassVar[AttemptReason]
    REPLAY: _ClassVar[AttemptReason]

class ActorState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTOR_STATE_UNSPECIFIED: _ClassVar[ActorState]
    DEPENDENCIES_UNREADY: _ClassVar[ActorState]
    PENDING_CREATION: _ClassVar[ActorState]
    ALIVE: _ClassVar[ActorState]
    RESTARTING: _ClassVar[ActorState]
    DEAD: _ClassVar[ActorState]

class ActorLifetime(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTOR_LIFETIME_UNSPECIFIED: _ClassVar[ActorLifetime]
    NON_DETACHED: _ClassVar[ActorLifetime]
    DETACHED: _ClassVar[ActorLifetime]

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    TASK_SUBMITTED: _ClassVar[EventKind]
    TASK_STARTED: _ClassVar[EventKind]
    TASK_FINISHED: _ClassVar[EventKind]
    TASK_FAILED: _ClassVar[EventKind]
    TASK_RETRIED: _ClassVar[EventKind]
    TASK_REPLAYED: _ClassVar[EventKind]
    OBJECT_LOST: _ClassVar[EventKind]
    OBJECT_RECONSTRUCTED: _ClassVar[EventKind]
    ACTOR_CREATED: _ClassVar[EventKind]
    ACTOR_DIED: _ClassVar[EventKind]
    ACTOR_RESTARTED: _ClassVar[EventKind]
    ACTOR_CALLS_REPLAYED: _ClassVar[EventKind]
    ACTOR_CHECKPOINTED: _ClassVar[EventKind]
    NODE_ADDED: _ClassVar[EventKind]
    NODE_DIED: _ClassVar[EventKind]
    WORKER_DIED: _ClassVar[EventKind]
    TASK_SPILLED: _ClassVar[EventKind]
TASK_STATE_UNSPECIFIED: TaskState
PENDING_ARGS: TaskState
PENDING_NODE: TaskState
SUBMITTED_TO_WORKER: TaskState
RUNNING: TaskState
FINISHED: TaskState
FAILED: TaskState
CANCELLED: TaskState
ATTEMPT_REASON_UNSPECIFIED: AttemptReason
FIRST_RUN: AttemptReason
RETRY: AttemptReason
REPLAY: AttemptReason
ACTOR_STATE_UNSPECIFIED: ActorState
DEPENDENCIES_UNREADY: ActorState
PENDING_CREATION: ActorState
ALIVE: ActorState
RESTARTING: ActorState
DEAD: ActorState
ACTOR_LIFETIME_UNSPECIFIED: ActorLifetime
NON_DETACHED: ActorLifetime
DETACHED: ActorLifetime
EVENT_KIND_UNSPECIFIED: EventKind
TASK_SUBMITTED: EventKind
TASK_STARTED: EventKind
TASK_FINISHED: EventKind
TASK_FAILED: EventKind
TASK_RETRIED: EventKind
TASK_REPLAYED: EventKind
OBJECT_LOST: EventKind
OBJECT_RECONSTRUCTED: EventKind
ACTOR_CREATED: EventKind
ACTOR_DIED: EventKind
ACTOR_RESTARTED: EventKind
ACTOR_CALLS_REPLAYED: EventKind
ACTOR_CHECKPOINTED: EventKind
NODE_ADDED: EventKind
NODE_DIED: EventKind
WORKER_DIED: EventKind
TASK_SPILLED: EventKind

class FunctionRecord(_message.Message):
    __slots__ = ("function_id", "name", "module", "body", "is_actor_class", "job_id")
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    IS_ACTOR_CLASS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    function_id: bytes
    name: str
    module: str
    body: bytes
    is_actor_class: bool
    job_id: bytes
    def __init__(self, function_id: _Optional[bytes] = ..., name: _Optional[str] = ..., module: _Optional[str] = ..., body: _Optional[bytes] = ..., is_actor_class: _Optional[bool] = ..., job_id: _Optional[bytes] = ...) -> None: ...

class TaskArg(_message.Message):
    __slots__ = ("value", "object_id", "nested_object_ids")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    NESTED_OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    object_id: bytes
    nested_object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, value: _Optional[bytes] = ..., object_id: _Optional[bytes] = ..., nested_object_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class KeywordArg(_message.Message):
    __slots__ = ("name", "arg")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARG_FIELD_NUMBER: _ClassVar[int]
    name: str
    arg: TaskArg
    def __init__(self, name: _Optional[str] = ..., arg: _Optional[_Union[TaskArg, _Mapping]] = ...) -> None: ...

class NodeAffinity(_message.Message):
    __slots__ = ("node_id", "soft")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SOFT_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    soft: bool
    def __init__(self, node_id: _Optional[bytes] = ..., soft: _Optional[bool] = ...) -> None: ...

class SchedulingStrategy(_message.Message):
    __slots__ = ("default", "spread", "node_affinity")
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    SPREAD_FIELD_NUMBER: _ClassVar[int]
    NODE_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    default: bool
    spread: bool
    node_affinity: NodeAffinity
    def __init__(self, default: _Optional[bool] = ..., spread: _Optional[bool] = ..., node_affinity: _Optional[_Union[NodeAffinity, _Mapping]] = ...) -> None: ...

class TaskOptions(_message.Message):
    __slots__ = ("max_retries", "retry_exceptions", "retry_exception_names", "scheduling_strategy", "name", "namespace", "lifetime", "max_calls")
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_EXCEPTIONS_FIELD_NUMBER: _ClassVar[int]
    RETRY_EXCEPTION_NAMES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_FIELD_NUMBER: _ClassVar[int]
    MAX_CALLS_FIELD_NUMBER: _ClassVar[int]
    max_retries: int
    retry_exceptions: bool
    retry_exception_names: _containers.RepeatedScalarFieldContainer[str]
    scheduling_strategy: SchedulingStrategy
    name: str
    namespace: str
    lifetime: ActorLifetime
    max_calls: int
    def __init__(self, max_retries: _Optional[int] = ..., retry_exceptions: _Optional[bool] = ..., retry_exception_names: _Optional[_Iterable[str]] = ..., scheduling_strategy: _Optional[_Union[SchedulingStrategy, _Mapping]] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., lifetime: _Optional[_Union[ActorLifetime, str]] = ..., max_calls: _Optional[int] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("task_id", "job_id", "parent_task_id", "submission_index", "function_id", "actor_id", "method_name", "sequence_number", "args", "kwargs", "num_returns", "resources", "options", "owner_worker_id", "is_actor_creation", "is_actor_task", "checkpoint_interval", "max_restarts", "max_task_retries", "max_concurrency", "submitted_ms")
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SUBMISSION_INDEX_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_NAME_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    NUM_RETURNS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OWNER_WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    IS_ACTOR_CREATION_FIELD_NUMBER: _ClassVar[int]
    IS_ACTOR_TASK_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    MAX_TASK_RETRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_MS_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    job_id: bytes
    parent_task_id: bytes
    submission_index: int
    function_id: bytes
    actor_id: bytes
    method_name: str
    sequence_number: int
    args: _containers.RepeatedCompositeFieldContainer[TaskArg]
    kwargs: _containers.RepeatedCompositeFieldContainer[KeywordArg]
    num_returns: int
    resources: _containers.ScalarMap[str, int]
    options: TaskOptions
    owner_worker_id: bytes
    is_actor_creation: bool
    is_actor_task: bool
    checkpoint_interval: int
    max_restarts: int
    max_task_retries: int
    max_concurrency: int
    submitted_ms: int
    def __init__(self, task_id: _Optional[bytes] = ..., job_id: _Optional[bytes] = ..., parent_task_id: _Optional[bytes] = ..., submission_index: _Optional[int] = ..., function_id: _Optional[bytes] = ..., actor_id: _Optional[bytes] = ..., method_name: _Optional[str] = ..., sequence_number: _Optional[int] = ..., args: _Optional[_Iterable[_Union[TaskArg, _Mapping]]] = ..., kwargs: _Optional[_Iterable[_Union[KeywordArg, _Mapping]]] = ..., num_returns: _Optional[int] = ..., resources: _Optional[_Mapping[str, int]] = ..., options: _Optional[_Union[TaskOptions, _Mapping]] = ..., owner_worker_id: _Optional[bytes] = ..., is_actor_creation: _Optional[bool] = ..., is_actor_task: _Optional[bool] = ..., checkpoint_interval: _Optional[int] = ..., max_restarts: _Optional[int] = ..., max_task_retries: _Optional[int] = ..., max_concurrency: _Optional[int] = ..., submitted_ms: _Optional[int] = ...) -> None: ...

class ErrorInfo(_message.Message):
    __slots__ = ("kind", "message", "traceback")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message: str
    traceback: str
    def __init__(self, kind: _Optional[str] = ..., message: _Optional[str] = ..., traceback: _Optional[str] = ...) -> None: ...

class TaskAttempt(_message.Message):
    __slots__ = ("task_id", "attempt_number", "reason", "node_id", "worker_id", "state", "start_ms", "end_ms", "error")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    attempt_number: int
    reason: AttemptReason
    node_id: bytes
    worker_id: bytes
    state: TaskState
    start_ms: int
    end_ms: int
    error: ErrorInfo
    def __init__(self, task_id: _Optional[bytes] = ..., attempt_number: _Optional[int] = ..., reason: _Optional[_Union[AttemptReason, str]] = ..., node_id: _Optional[bytes] = ..., worker_id: _Optional[bytes] = ..., state: _Optional[_Union[TaskState, str]] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., error: _Optional[_Union[ErrorInfo, _Mapping]] = ...) -> None: ...

class ObjectRecord(_message.Message):
    __slots__ = ("object_id", "producing_task_id", "size_bytes", "is_put", "locations", "inline_value", "has_inline_value", "owner_worker_id")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCING_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IS_PUT_FIELD_NUMBER: _ClassVar[int]
    LOCATIONS_FIELD_NUMBER: _ClassVar[int]
    INLINE_VALUE_FIELD_NUMBER: _ClassVar[int]
    HAS_INLINE_VALUE_FIELD_NUMBER: _ClassVar[int]
    OWNER_WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    producing_task_id: bytes
    size_bytes: int
    is_put: bool
    locations: _containers.RepeatedScalarFieldContainer[bytes]
    inline_value: bytes
    has_inline_value: bool
    owner_worker_id: bytes
    def __init__(self, object_id: _Optional[bytes] = ..., producing_task_id: _Optional[bytes] = ..., size_bytes: _Optional[int] = ..., is_put: _Optional[bool] = ..., locations: _Optional[_Iterable[bytes]] = ..., inline_value: _Optional[bytes] = ..., has_inline_value: _Optional[bool] = ..., owner_worker_id: _Optional[bytes] = ...) -> None: ...

class ActorRecord(_message.Message):
    __slots__ = ("actor_id", "creation_task_id", "state", "node_id", "worker_id", "name", "namespace", "lifetime", "max_restarts", "num_restarts", "next_sequence_number", "checkpoint_sequence_number", "checkpoint_object_id", "checkpoint_key", "checkpoint_interval", "owner_worker_id", "death_cause", "updated_ms", "owner_node_id")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    CREATION_TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    NUM_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_KEY_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    OWNER_WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    DEATH_CAUSE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_MS_FIELD_NUMBER: _ClassVar[int]
    OWNER_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    creation_task_id: bytes
    state: ActorState
    node_id: bytes
    worker_id: bytes
    name: str
    namespace: str
    lifetime: ActorLifetime
    max_restarts: int
    num_restarts: int
    next_sequence_number: int
    checkpoint_sequence_number: int
    checkpoint_object_id: bytes
    checkpoint_key: bytes
    checkpoint_interval: int
    owner_worker_id: bytes
    death_cause: ErrorInfo
    updated_ms: int
    owner_node_id: bytes
    def __init__(self, actor_id: _Optional[bytes] = ..., creation_task_id: _Optional[bytes] = ..., state: _Optional[_Union[ActorState, str]] = ..., node_id: _Optional[bytes] = ..., worker_id: _Optional[bytes] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., lifetime: _Optional[_Union[ActorLifetime, str]] = ..., max_restarts: _Optional[int] = ..., num_restarts: _Optional[int] = ..., next_sequence_number: _Optional[int] = ..., checkpoint_sequence_number: _Optional[int] = ..., checkpoint_object_id: _Optional[bytes] = ..., checkpoint_key: _Optional[bytes] = ..., checkpoint_interval: _Optional[int] = ..., owner_worker_id: _Optional[bytes] = ..., death_cause: _Optional[_Union[ErrorInfo, _Mapping]] = ..., updated_ms: _Optional[int] = ..., owner_node_id: _Optional[bytes] = ...) -> None: ...

class ActorCallRecord(_message.Message):
    __slots__ = ("actor_id", "sequence_number", "task_id", "method_name", "caller_worker_id", "finished", "submitted_ms")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_NAME_FIELD_NUMBER: _ClassVar[int]
    CALLER_WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_MS_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    sequence_number: int
    task_id: bytes
    method_name: str
    caller_worker_id: bytes
    finished: bool
    submitted_ms: int
    def __init__(self, actor_id: _Optional[bytes] = ..., sequence_number: _Optional[int] = ..., task_id: _Optional[bytes] = ..., method_name: _Optional[str] = ..., caller_worker_id: _Optional[bytes] = ..., finished: _Optional[bool] = ..., submitted_ms: _Optional[int] = ...) -> None: ...

class NodeRecord(_message.Message):
    __slots__ = ("node_id", "address", "object_manager_address", "resources_total", "alive", "heartbeat_ms", "incarnation", "started_ms", "died_ms", "death_reason")
    class ResourcesTotalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    OBJECT_MANAGER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    STARTED_MS_FIELD_NUMBER: _ClassVar[int]
    DIED_MS_FIELD_NUMBER: _ClassVar[int]
    DEATH_REASON_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    address: str
    object_manager_address: str
    resources_total: _containers.ScalarMap[str, int]
    alive: bool
    heartbeat_ms: int
    incarnation: int
    started_ms: int
    died_ms: int
    death_reason: str
    def __init__(self, node_id: _Optional[bytes] = ..., address: _Optional[str] = ..., object_manager_address: _Optional[str] = ..., resources_total: _Optional[_Mapping[str, int]] = ..., alive: _Optional[bool] = ..., heartbeat_ms: _Optional[int] = ..., incarnation: _Optional[int] = ..., started_ms: _Optional[int] = ..., died_ms: _Optional[int] = ..., death_reason: _Optional[str] = ...) -> None: ...

class EventRecord(_message.Message):
    __slots__ = ("kind", "time_ms", "event_id", "job_id", "task_id", "object_id", "actor_id", "node_id", "worker_id", "attempt_number", "detail", "duration_ms", "count")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    kind: EventKind
    time_ms: int
    event_id: bytes
    job_id: bytes
    task_id: bytes
    object_id: bytes
    actor_id: bytes
    node_id: bytes
    worker_id: bytes
    attempt_number: int
    detail: str
    duration_ms: int
    count: int
    def __init__(self, kind: _Optional[_Union[EventKind, str]] = ..., time_ms: _Optional[int] = ..., event_id: _Optional[bytes] = ..., job_id: _Optional[bytes] = ..., task_id: _Optional[bytes] = ..., object_id: _Optional[bytes] = ..., actor_id: _Optional[bytes] = ..., node_id: _Optional[bytes] = ..., worker_id: _Optional[bytes] = ..., attempt_number: _Optional[int] = ..., detail: _Optional[str] = ..., duration_ms: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...
