from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PullRequest(_message.Message):
    __slots__ = ("object_id", "chunk_size_bytes", "offset")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    object_id: bytes
    chunk_size_bytes: int
    offset: int
    def __init__(self, object_id: _Optional[bytes] = ..., chunk_size_bytes: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class TransferredObjectInfo(_message.Message):
    __slots__ = ("size_bytes", "is_error", "nested_object_ids")
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    NESTED_OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    is_error: bool
    nested_object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, size_bytes: _Optional[int] = ..., is_error: _Optional[bool] = ..., nested_object_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ObjectChunk(_message.Message):
    __slots__ = ("offset", "data", "info")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    info: TransferredObjectInfo
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., info: _Optional[_Union[TransferredObjectInfo, _Mapping]] = ...) -> None: ...

class HasRequest(_message.Message):
    __slots__ = ("object_ids",)
    OBJECT_IDS_FIELD_NUMBER: _ClassVar[int]
    object_ids: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, object_ids: _Optional[_Iterable[bytes]] = ...) -> None: ...

class HasReply(_message.Message):
    __slots__ = ("size_bytes",)
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    size_bytes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, size_bytes: _Optional[_Iterable[int]] = ...) -> None: ...
