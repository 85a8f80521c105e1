"""Values <-> ``ObjectPayload``s: inline bytes for small values, a sealed
shared-memory file of the node's store for large ones (written by this
process, adopted by the node manager), pickled lineagerun exceptions for
errors."""

from __future__ import annotations

import os
from typing import Any

import cloudpickle

from lineagerun import exceptions
from lineagerun.api.object_ref import id_to_ref, ref_to_id
from lineagerun.objects import shm
from lineagerun.objects.serialization import SerializedObject, deserialize_from, serialize
from lineagerun.objects.store import write_reserved
from lineagerun.rpc import node_pb2


def serialize_value(value: Any) -> SerializedObject:
    return serialize(value, ref_to_id=ref_to_id)


def shm_file_name(store_session_id: str, object_id: bytes) -> str:
    """The ``shm_name`` of a sealed object: its file name under /dev/shm."""
    return os.path.basename(shm.object_path(store_session_id, object_id, sealed=True))


def write_shared(store_session_id: str, object_id: bytes, serialized: SerializedObject) -> str:
    """Write a sealed file of the node's store (reserve, write, seal: the
    same protocol as ``LocalObjectStore``); the node manager adopts it when
    it receives the payload. Returns its ``shm_name``."""
    path = shm.allocate_object_file(store_session_id, object_id, serialized.total_bytes)
    try:
        write_reserved(path, serialized)
        shm.seal_object_file(store_session_id, object_id)
    except BaseException:
        shm.unlink_object_file(store_session_id, object_id, sealed=False)
        raise
    return shm_file_name(store_session_id, object_id)


def to_payload(serialized: SerializedObject, object_id: bytes, store_session_id: str,
               inline_max_bytes: int) -> node_pb2.ObjectPayload:
    nested = list(serialized.contained_ids)
    if serialized.total_bytes <= inline_max_bytes:
        return node_pb2.ObjectPayload(inline=serialized.to_bytes(), size_bytes=serialized.total_bytes,
                                      nested_object_ids=nested)
    name = write_shared(store_session_id, object_id, serialized)
    return node_pb2.ObjectPayload(shm_name=name, size_bytes=serialized.total_bytes, nested_object_ids=nested)


def error_payload(error: BaseException) -> node_pb2.ObjectPayload:
    data = pickle_error(error)
    return node_pb2.ObjectPayload(inline=data, size_bytes=len(data), is_error=True)


def pickle_error(error: BaseException) -> bytes:
    try:
        return cloudpickle.dumps(error)
    except Exception:
        # The user's exception cannot be pickled: keep its text and traceback.
        if isinstance(error, exceptions.TaskError):
            return cloudpickle.dumps(exceptions.TaskError(error.function_name, error.traceback_str, None,
                                                          error.pid, error.node_id))
        return cloudpickle.dumps(exceptions.LineagerunError(f"{type(error).__name__}: {error}"))


def _map_shm(shm_name: str) -> Any:
    # shm_name is a file name under /dev/shm; accept a full path too.
    path = shm_name if shm_name.startswith("/") else os.path.join(shm.SHM_DIR, shm_name)
    import mmap

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        return mmap.mmap(fd, size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)


def from_payload(payload: node_pb2.ObjectPayload, object_hex: str = "") -> Any:
    """The value of a payload; an error payload is returned (not raised) as
    the exception it holds."""
    kind = payload.WhichOneof("kind")
    if payload.is_error:
        data = payload.inline if kind == "inline" else bytes(_map_shm(payload.shm_name))
        try:
            return cloudpickle.loads(data)
        except Exception as exc:
            return exceptions.LineagerunError(f"could not unpickle the error of object {object_hex}: {exc!r}")
    if kind == "shm_name":
        try:
            region = _map_shm(payload.shm_name)
        except FileNotFoundError:
            raise exceptions.ObjectLostError(object_hex, f"its shared-memory file {payload.shm_name} is gone "
                                             "(evicted or the node stopped)") from None
        return deserialize_from(region, id_to_ref=id_to_ref)
    return deserialize_from(payload.inline, id_to_ref=id_to_ref)


def error_from_result(result: node_pb2.ObjectResult) -> BaseException:
    """The exception for a node-detected failure (``error_kind`` names a class
    of lineagerun.exceptions)."""
    cls = getattr(exceptions, result.error_kind, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        cls = exceptions.LineagerunError
    message = result.error_message or result.error_kind
    if issubclass(cls, exceptions.ObjectLostError):
        return cls(result.object_id.hex(), message)
    try:
        return cls(message)
    except TypeError:
        return exceptions.LineagerunError(f"{result.error_kind}: {message}")
