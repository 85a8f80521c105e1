from lineagerun.rpc import lineage_pb2 as _lineage_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ObjectPayload(_message.Message):
    __slots__ = ("inline", "shm_name", "size_bytes", "is_error", "nested_object_ids")
    INLINE_FIELD_NUMBER: _ClassVar[int]
    SHM_NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    NESTED_OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    inline: bytes
    shm_name: str
    size_bytes: int
    is_error: bool
    nested_object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, inline: _Optional[bytes] = ..., shm_name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., is_error: _Optional[bool] = ..., nested_object_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ObjectResult(_message.Message):
    __slots__ = ("object_id", "payload", "error_kind", "error_message")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    payload: ObjectPayload
    error_kind: str
    error_message: str
    def __init__(self, object_id: _Optional[bytes] = ..., payload: _Optional[_Union[ObjectPayload, _Mapping]] = ..., error_kind: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("worker_id", "pid", "kind", "job_id", "namespace", "accepts_batches")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Register.Kind]
        DRIVER: _ClassVar[Register.Kind]
        WORKER: _ClassVar[Register.Kind]
        PEER: _ClassVar[Register.Kind]
    KIND_UNSPECIFIED: Register.Kind
    DRIVER: Register.Kind
    WORKER: Register.Kind
    PEER: Register.Kind
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_BATCHES_FIELD_NUMBER: _ClassVar[int]
    worker_id: bytes
    pid: int
    kind: Register.Kind
    job_id: bytes
    namespace: str
    accepts_batches: bool
    def __init__(self, worker_id: _Optional[bytes] = ..., pid: _Optional[int] = ..., kind: _Optional[_Union[Register.Kind, str]] = ..., job_id: _Optional[bytes] = ..., namespace: _Optional[str] = ..., accepts_batches: _Optional[bool] = ...) -> None: ...

class ClientMessages(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ClientMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[ClientMessage, _Mapping]]] = ...) -> None: ...

class NodeMessages(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[NodeMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[NodeMessage, _Mapping]]] = ...) -> None: ...

class SubmitTasks(_message.Message):
    __slots__ = ("specs", "actor_calls_resent", "actor_restart", "attempt_numbers", "attempt_reasons")
    SPECS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_CALLS_RESENT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_RESTART_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_REASONS_FIELD_NUMBER: _ClassVar[int]
    specs: _containers.RepeatedCompositeFieldContainer[_lineage_pb2.TaskSpec]
    actor_calls_resent: bool
    actor_restart: bool
    attempt_numbers: _containers.RepeatedScalarFieldContainer[int]
    attempt_reasons: _containers.RepeatedScalarFieldContainer[_lineage_pb2.AttemptReason]
    def __init__(self, specs: _Optional[_Iterable[_Union[_lineage_pb2.TaskSpec, _Mapping]]] = ..., actor_calls_resent: _Optional[bool] = ..., actor_restart: _Optional[bool] = ..., attempt_numbers: _Optional[_Iterable[int]] = ..., attempt_reasons: _Optional[_Iterable[_Union[_lineage_pb2.AttemptReason, str]]] = ...) -> None: ...

class ExportFunction(_message.Message):
    __slots__ = ("function",)
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    function: _lineage_pb2.FunctionRecord
    def __init__(self, function: _Optional[_Union[_lineage_pb2.FunctionRecord, _Mapping]] = ...) -> None: ...

class GetObjects(_message.Message):
    __slots__ = ("request_id", "object_ids", "timeout_ms", "not_blocking")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    NOT_BLOCKING_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    timeout_ms: int
    not_blocking: bool
    def __init__(self, request_id: _Optional[int] = ..., object_ids: _Optional[_Iterable[bytes]] = ..., timeout_ms: _Optional[int] = ..., not_blocking: _Optional[bool] = ...) -> None: ...

class WaitObjects(_message.Message):
    __slots__ = ("request_id", "object_ids", "num_returns", "timeout_ms", "fetch_local")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    NUM_RETURNS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    FETCH_LOCAL_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    num_returns: int
    timeout_ms: int
    fetch_local: bool
    def __init__(self, request_id: _Optional[int] = ..., object_ids: _Optional[_Iterable[bytes]] = ..., num_returns: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., fetch_local: _Optional[bool] = ...) -> None: ...

class PutObject(_message.Message):
    __slots__ = ("object_id", "payload")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    payload: ObjectPayload
    def __init__(self, object_id: _Optional[bytes] = ..., payload: _Optional[_Union[ObjectPayload, _Mapping]] = ...) -> None: ...

class TaskFinished(_message.Message):
    __slots__ = ("task_id", "attempt_number", "returns", "application_error", "error_kind", "duration_ms", "retire_worker")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    RETURNS_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    RETIRE_WORKER_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    attempt_number: int
    returns: _containers.RepeatedCompositeFieldContainer[ObjectResult]
    application_error: bool
    error_kind: str
    duration_ms: int
    retire_worker: bool
    def __init__(self, task_id: _Optional[bytes] = ..., attempt_number: _Optional[int] = ..., returns: _Optional[_Iterable[_Union[ObjectResult, _Mapping]]] = ..., application_error: _Optional[bool] = ..., error_kind: _Optional[str] = ..., duration_ms: _Optional[int] = ..., retire_worker: _Optional[bool] = ...) -> None: ...

class TaskHandedBack(_message.Message):
    __slots__ = ("task_id", "attempt_number")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    attempt_number: int
    def __init__(self, task_id: _Optional[bytes] = ..., attempt_number: _Optional[int] = ...) -> None: ...

class ObjectsMapped(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    def __init__(self, request_id: _Optional[int] = ...) -> None: ...

class CancelTask(_message.Message):
    __slots__ = ("task_id", "force", "recursive", "request_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    force: bool
    recursive: bool
    request_id: int
    def __init__(self, task_id: _Optional[bytes] = ..., force: _Optional[bool] = ..., recursive: _Optional[bool] = ..., request_id: _Optional[int] = ...) -> None: ...

class KillActor(_message.Message):
    __slots__ = ("actor_id", "no_restart", "request_id", "exiting")
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    NO_RESTART_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXITING_FIELD_NUMBER: _ClassVar[int]
    actor_id: bytes
    no_restart: bool
    request_id: int
    exiting: bool
    def __init__(self, actor_id: _Optional[bytes] = ..., no_restart: _Optional[bool] = ..., request_id: _Optional[int] = ..., exiting: _Optional[bool] = ...) -> None: ...

class GetActorRequest(_message.Message):
    __slots__ = ("request_id", "name", "namespace")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    name: str
    namespace: str
    def __init__(self, request_id: _Optional[int] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ...) -> None: ...

class ClusterInfoRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    def __init__(self, request_id: _Optional[int] = ...) -> None: ...

class ReleaseObjects(_message.Message):
    __slots__ = ("object_ids",)
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, object_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ClientMessage(_message.Message):
    __slots__ = ("register", "submit_tasks", "export_function", "get_objects", "wait_objects", "put_object", "task_finished", "cancel_task", "kill_actor", "get_actor", "cluster_info", "release_objects", "task_handed_back", "objects_mapped", "batch")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_TASKS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FUNCTION_FIELD_NUMBER: _ClassVar[int]
    GET_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    WAIT_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    PUT_OBJECT_FIELD_NUMBER: _ClassVar[int]
    TASK_FINISHED_FIELD_NUMBER: _ClassVar[int]
    CANCEL_TASK_FIELD_NUMBER: _ClassVar[int]
    KILL_ACTOR_FIELD_NUMBER: _ClassVar[int]
    GET_ACTOR_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_INFO_FIELD_NUMBER: _ClassVar[int]
    RELEASE_OBJECTS_FIELD_NUMBER: _ClassVar[int]
    TASK_HANDED_BACK_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_MAPPED_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    register: Register
    submit_tasks: SubmitTasks
    export_function: ExportFunction
    get_objects: GetObjects
    wait_objects: WaitObjects
    put_object: PutObject
    task_finished: TaskFinished
    cancel_task: CancelTask
    kill_actor: KillActor
    get_actor: GetActorRequest
    cluster_info: ClusterInfoRequest
    release_objects: ReleaseObjects
    task_handed_back: TaskHandedBack
    objects_mapped: ObjectsMapped
    batch: ClientMessages
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., submit_tasks: _Optional[_Union[SubmitTasks, _Mapping]] = ..., export_function: _Optional[_Union[ExportFunction, _Mapping]] = ..., get_objects: _Optional[_Union[GetObjects, _Mapping]] = ..., wait_objects: _Optional[_Union[WaitObjects, _Mapping]] = ..., put_object: _Optional[_Union[PutObject, _Mapping]] = ..., task_finished: _Optional[_Union[TaskFinished, _Mapping]] = ..., cancel_task: _Optional[_Union[CancelTask, _Mapping]] = ..., kill_actor: _Optional[_Union[KillActor, _Mapping]] = ..., get_actor: _Optional[_Union[GetActorRequest, _Mapping]] = ..., cluster_info: _Optional[_Union[ClusterInfoRequest, _Mapping]] = ..., release_objects: _Optional[_Union[ReleaseObjects, _Mapping]] = ..., task_handed_back: _Optional[_Union[TaskHandedBack, _Mapping]] = ..., objects_mapped: _Optional[_Union[ObjectsMapped, _Mapping]] = ..., batch: _Optional[_Union[ClientMessages, _Mapping]] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("node_id", "job_id", "session_dir", "store_session_id", "inline_object_max_bytes", "control_store_address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_DIR_FIELD_NUMBER: _ClassVar[int]
    STORE_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    INLINE_OBJECT_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONTROL_STORE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    job_id: bytes
    session_dir: str
    store_session_id: str
    inline_object_max_bytes: int
    control_store_address: str
    def __init__(self, node_id: _Optional[bytes] = ..., job_id: _Optional[bytes] = ..., session_dir: _Optional[str] = ..., store_session_id: _Optional[str] = ..., inline_object_max_bytes: _Optional[int] = ..., control_store_address: _Optional[str] = ...) -> None: ...

class ResolvedArg(_message.Message):
    __slots__ = ("payload",)
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    payload: ObjectPayload
    def __init__(self, payload: _Optional[_Union[ObjectPayload, _Mapping]] = ...) -> None: ...

class ExecuteTask(_message.Message):
    __slots__ = ("spec", "attempt_number", "args", "kwargs", "function", "restore_checkpoint", "is_replay")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    KWARGS_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    RESTORE_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    IS_REPLAY_FIELD_NUMBER: _ClassVar[int]
    spec: _lineage_pb2.TaskSpec
    attempt_number: int
    args: _containers.RepeatedCompositeFieldContainer[ResolvedArg]
    kwargs: _containers.RepeatedCompositeFieldContainer[ResolvedArg]
    function: _lineage_pb2.FunctionRecord
    restore_checkpoint: ObjectPayload
    is_replay: bool
    def __init__(self, spec: _Optional[_Union[_lineage_pb2.TaskSpec, _Mapping]] = ..., attempt_number: _Optional[int] = ..., args: _Optional[_Iterable[_Union[ResolvedArg, _Mapping]]] = ..., kwargs: _Optional[_Iterable[_Union[ResolvedArg, _Mapping]]] = ..., function: _Optional[_Union[_lineage_pb2.FunctionRecord, _Mapping]] = ..., restore_checkpoint: _Optional[_Union[ObjectPayload, _Mapping]] = ..., is_replay: _Optional[bool] = ...) -> None: ...

class ObjectsReply(_message.Message):
    __slots__ = ("request_id", "objects", "timed_out")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    objects: _containers.RepeatedCompositeFieldContainer[ObjectResult]
    timed_out: bool
    def __init__(self, request_id: _Optional[int] = ..., objects: _Optional[_Iterable[_Union[ObjectResult, _Mapping]]] = ..., timed_out: _Optional[bool] = ...) -> None: ...

class WaitReply(_message.Message):
    __slots__ = ("request_id", "ready_object_ids")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    READY_OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    ready_object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, request_id: _Optional[int] = ..., ready_object_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ActorInfo(_message.Message):
    __slots__ = ("request_id", "actor", "found", "creation_spec")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    CREATION_SPEC_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    actor: _lineage_pb2.ActorRecord
    found: bool
    creation_spec: _lineage_pb2.TaskSpec
    def __init__(self, request_id: _Optional[int] = ..., actor: _Optional[_Union[_lineage_pb2.ActorRecord, _Mapping]] = ..., found: _Optional[bool] = ..., creation_spec: _Optional[_Union[_lineage_pb2.TaskSpec, _Mapping]] = ...) -> None: ...

class NodeView(_message.Message):
    __slots__ = ("node_id", "address", "alive", "resources_total", "resources_available")
    class ResourcesTotalEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ResourcesAvailableEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    address: str
    alive: bool
    resources_total: _containers.ScalarMap[str, float]
    resources_available: _containers.ScalarMap[str, float]
    def __init__(self, node_id: _Optional[bytes] = ..., address: _Optional[str] = ..., alive: _Optional[bool] = ..., resources_total: _Optional[_Mapping[str, float]] = ..., resources_available: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ClusterInfoReply(_message.Message):
    __slots__ = ("request_id", "nodes")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeView]
    def __init__(self, request_id: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeView, _Mapping]]] = ...) -> None: ...

class CancelRunning(_message.Message):
    __slots__ = ("task_id", "force")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    task_id: bytes
    force: bool
    def __init__(self, task_id: _Optional[bytes] = ..., force: _Optional[bool] = ...) -> None: ...

class RequestError(_message.Message):
    __slots__ = ("request_id", "error_kind", "message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    error_kind: str
    message: str
    def __init__(self, request_id: _Optional[int] = ..., error_kind: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class NodeMessage(_message.Message):
    __slots__ = ("registered", "execute_task", "objects_reply", "wait_reply", "actor_info", "cluster_info", "cancel_running", "request_error", "exit", "batch")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    EXECUTE_TASK_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_REPLY_FIELD_NUMBER: _ClassVar[int]
    WAIT_REPLY_FIELD_NUMBER: _ClassVar[int]
    ACTOR_INFO_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_INFO_FIELD_NUMBER: _ClassVar[int]
    CANCEL_RUNNING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ERROR_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    registered: Registered
    execute_task: ExecuteTask
    objects_reply: ObjectsReply
    wait_reply: WaitReply
    actor_info: ActorInfo
    cluster_info: ClusterInfoReply
    cancel_running: CancelRunning
    request_error: RequestError
    exit: bool
    batch: NodeMessages
    def __init__(self, registered: _Optional[_Union[Registered, _Mapping]] = ..., execute_task: _Optional[_Union[ExecuteTask, _Mapping]] = ..., objects_reply: _Optional[_Union[ObjectsReply, _Mapping]] = ..., wait_reply: _Optional[_Union[WaitReply, _Mapping]] = ..., actor_info: _Optional[_Union[ActorInfo, _Mapping]] = ..., cluster_info: _Optional[_Union[ClusterInfoReply, _Mapping]] = ..., cancel_running: _Optional[_Union[CancelRunning, _Mapping]] = ..., request_error: _Optional[_Union[RequestError, _Mapping]] = ..., exit: _Optional[bool] = ..., batch: _Optional[_Union[NodeMessages, _Mapping]] = ...) -> None: ...
