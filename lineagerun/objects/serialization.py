"""Serialisation of values into one contiguous, zero-copy readable region.

A value is pickled with ``cloudpickle`` at protocol 5 with out-of-band
buffers: numpy arrays and pyarrow buffers/arrays/tables come out of the pickle
as separate raw buffers instead of being copied into the pickle stream. The
region written by :meth:`SerializedObject.write_into` is::

    offset 0   header   magic "LRO5", format version (u16), flags (u16),
                        buffer count (u32), reserved (u32), metadata length (u64)
    offset 24  table    one (offset u64, length u64) per buffer
    then       metadata the pickle bytes
    then       buffers  each starting at a multiple of BUFFER_ALIGNMENT_BYTES

All integers are little-endian. Offsets are from the start of the region, so
a region mapped at a page boundary gives every buffer 64-byte aligned memory
(what numpy and Arrow want for SIMD).

:func:`deserialize_from` gives the buffers to ``pickle.loads`` as slices of the
region itself: a numpy array read from a shared-memory mapping points into the
mapping (zero copy) and is read-only, as in Ray.

Object references nested in a value are handled by a pair of hooks: at
``serialize`` time ``ref_to_id(obj)`` returns the id (bytes) of an object that
is a reference, or None; each such id is recorded in
``SerializedObject.contained_ids`` and stored in the pickle in its place; at
``deserialize_from`` time ``id_to_ref(id)`` turns it back into a reference.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

import cloudpickle

from lineagerun.exceptions import SerializationError

MAGIC = b"LRO5"
FORMAT_VERSION = 1
PICKLE_PROTOCOL = 5
# 64 bytes: a cache line and the alignment Arrow asks for; numpy needs less.
BUFFER_ALIGNMENT_BYTES = 64

_HEADER = struct.Struct("<4sHHIIQ")
_TABLE_ENTRY = struct.Struct("<QQ")
# A header claiming more buffers than this is corrupt, not a real value: even a
# table with a million arrays stays well below it.
BUFFER_COUNT_MAX = 1 << 24
# Bounds of the search for the part of a value that cannot be pickled (error
# path only): how deep to descend and how many members to try per level.
_UNPICKLABLE_SEARCH_DEPTH_MAX = 8
_UNPICKLABLE_SEARCH_MEMBERS_MAX = 200

RefToId = Callable[[Any], "bytes | None"]
IdToRef = Callable[[bytes], Any]


def _align(offset: int) -> int:
    return (offset + BUFFER_ALIGNMENT_BYTES - 1) // BUFFER_ALIGNMENT_BYTES * BUFFER_ALIGNMENT_BYTES


@dataclass(frozen=True)
class SerializedObject:
    """A serialised value, not yet laid out: ``metadata`` is the pickle stream,
    ``buffers`` the out-of-band buffers (flat byte memoryviews that still point
    at the original arrays), ``contained_ids`` the ids of nested references."""

    metadata: bytes
    buffers: tuple[memoryview, ...]
    contained_ids: tuple[bytes, ...] = ()
    buffer_offsets: tuple[int, ...] = field(default=(), repr=False)
    total_bytes: int = 0

    @classmethod
    def build(cls, metadata: bytes, buffers: list[memoryview],
              contained_ids: list[bytes] | tuple[bytes, ...] = ()) -> "SerializedObject":
        offset = _HEADER.size + _TABLE_ENTRY.size * len(buffers) + len(metadata)
        offsets = []
        for buf in buffers:
            offset = _align(offset)
            offsets.append(offset)
            offset += buf.nbytes
        return cls(metadata=metadata, buffers=tuple(buffers), contained_ids=tuple(contained_ids),
                   buffer_offsets=tuple(offsets), total_bytes=offset)

    def write_into(self, dest) -> int:
        """Lay the object out at the start of ``dest`` (a writable buffer of at
        least ``total_bytes``); returns the number of bytes written."""
        view = memoryview(dest)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        if view.readonly:
            raise SerializationError("write_into needs a writable buffer; got a read-only one")
        if view.nbytes < self.total_bytes:
            raise SerializationError(
                f"write_into needs {self.total_bytes} bytes; the buffer has {view.nbytes}")
        _HEADER.pack_into(view, 0, MAGIC, FORMAT_VERSION, 0, len(self.buffers), 0, len(self.metadata))
        position = _HEADER.size
        for offset, buf in zip(self.buffer_offsets, self.buffers):
            _TABLE_ENTRY.pack_into(view, position, offset, buf.nbytes)
            position += _TABLE_ENTRY.size
        view[position:position + len(self.metadata)] = self.metadata
        for offset, buf in zip(self.buffer_offsets, self.buffers):
            view[offset:offset + buf.nbytes] = buf
        return self.total_bytes

    def write_to_fd(self, fd: int) -> int:
        """Write the laid-out object at the start of an open file with
        ``pwrite``. For a fresh tmpfs file this is about twice as fast as
        copying into a new mapping (no page faults); the padding between
        buffers is left as the file's zeros. Returns the bytes written."""
        first_buffer_offset = self.buffer_offsets[0] if self.buffers else self.total_bytes
        prefix = bytearray(first_buffer_offset)
        _HEADER.pack_into(prefix, 0, MAGIC, FORMAT_VERSION, 0, len(self.buffers), 0, len(self.metadata))
        position = _HEADER.size
        for offset, buf in zip(self.buffer_offsets, self.buffers):
            _TABLE_ENTRY.pack_into(prefix, position, offset, buf.nbytes)
            position += _TABLE_ENTRY.size
        prefix[position:position + len(self.metadata)] = self.metadata
        _pwrite_all(fd, memoryview(prefix), 0)
        for offset, buf in zip(self.buffer_offsets, self.buffers):
            _pwrite_all(fd, buf, offset)
        return self.total_bytes

    def to_bytes(self) -> bytes:
        """The laid-out region as bytes (for small objects sent inline)."""
        region = bytearray(self.total_bytes)
        self.write_into(region)
        return bytes(region)


# One pwrite moves at most this much: Linux caps a write at 2 GiB - 4 KiB.
_PWRITE_CHUNK_BYTES = 1 << 30


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    position = 0
    while position < data.nbytes:
        written = os.pwrite(fd, data[position:position + _PWRITE_CHUNK_BYTES], offset + position)
        if written <= 0:
            raise OSError(f"pwrite wrote {written} bytes")
        position += written


class _RefTrackingPickler(cloudpickle.Pickler):
    """cloudpickle's pickler plus a persistent-id hook for nested references.
    Used only when a hook is given: persistent_id costs a Python call per
    pickled object."""

    def __init__(self, file, ref_to_id: RefToId, contained_ids: list[bytes], **kwargs):
        super().__init__(file, **kwargs)
        self._ref_to_id = ref_to_id
        self._contained_ids = contained_ids

    def persistent_id(self, obj):
        object_id = self._ref_to_id(obj)
        if object_id is None:
            return None
        if not isinstance(object_id, bytes):
            raise SerializationError(
                f"ref_to_id must return bytes or None; it returned a {type(object_id).__name__}")
        self._contained_ids.append(object_id)
        return object_id


class _RefResolvingUnpickler(pickle.Unpickler):
    def __init__(self, file, id_to_ref: IdToRef | None, **kwargs):
        super().__init__(file, **kwargs)
        self._id_to_ref = id_to_ref

    def persistent_load(self, pid):
        if self._id_to_ref is None:
            raise SerializationError(
                f"the value contains a reference to object {bytes(pid).hex()}; "
                "pass id_to_ref= to deserialize_from to rebuild references")
        return self._id_to_ref(pid)


def serialize(value: Any, *, ref_to_id: RefToId | None = None) -> SerializedObject:
    """Serialise ``value``; raises SerializationError (naming the offending
    part and type) if some part of it cannot be pickled."""
    buffers: list[memoryview] = []
    contained_ids: list[bytes] = []

    def keep_out_of_band(pickle_buffer: pickle.PickleBuffer) -> bool:
        try:
            buffers.append(pickle_buffer.raw())
        except BufferError:  # non-contiguous: a copy keeps the format simple
            buffers.append(memoryview(memoryview(pickle_buffer).tobytes()))
        return False

    stream = io.BytesIO()
    try:
        if ref_to_id is None:
            pickler = cloudpickle.Pickler(stream, protocol=PICKLE_PROTOCOL, buffer_callback=keep_out_of_band)
        else:
            pickler = _RefTrackingPickler(stream, ref_to_id, contained_ids, protocol=PICKLE_PROTOCOL,
                                          buffer_callback=keep_out_of_band)
        pickler.dump(value)
    except SerializationError:
        raise
    except Exception as exc:  # pickle raises TypeError, PicklingError, AttributeError, ...
        raise SerializationError(_unpicklable_message(value, exc)) from exc
    return SerializedObject.build(stream.getvalue(), buffers, contained_ids)


def _read_layout(view: memoryview) -> tuple[int, int, list[tuple[int, int]]]:
    """Validated (metadata offset, metadata length, [(buffer offset, length)])."""
    if view.nbytes < _HEADER.size:
        raise SerializationError(f"not a serialised object: {view.nbytes} bytes is shorter than the header")
    magic, version, _flags, buffer_count, _reserved, metadata_len = _HEADER.unpack_from(view, 0)
    if magic != MAGIC:
        raise SerializationError(f"not a serialised object: bad magic {bytes(magic)!r}")
    if version != FORMAT_VERSION:
        raise SerializationError(
            f"serialised object has format version {version}; this lineagerun reads version "
            f"{FORMAT_VERSION}: run the same lineagerun version on every process of the cluster")
    if buffer_count > BUFFER_COUNT_MAX:
        raise SerializationError(f"corrupt serialised object: {buffer_count} buffers")
    metadata_offset = _HEADER.size + _TABLE_ENTRY.size * buffer_count
    if metadata_offset + metadata_len > view.nbytes:
        raise SerializationError("corrupt serialised object: metadata runs past the end of the region")
    layout = []
    for i in range(buffer_count):
        offset, length = _TABLE_ENTRY.unpack_from(view, _HEADER.size + _TABLE_ENTRY.size * i)
        if offset < metadata_offset + metadata_len or offset + length > view.nbytes:
            raise SerializationError(f"corrupt serialised object: buffer {i} lies outside the region")
        layout.append((offset, length))
    return metadata_offset, metadata_len, layout


def deserialize_from(region, *, id_to_ref: IdToRef | None = None) -> Any:
    """Rebuild a value from a region written by ``write_into``. Out-of-band
    buffers are read-only slices of ``region`` (zero copy): the value keeps
    the region alive for as long as it needs it."""
    view = memoryview(region)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    view = view.toreadonly()  # objects are immutable, whatever region they come from
    metadata_offset, metadata_len, layout = _read_layout(view)
    metadata = view[metadata_offset:metadata_offset + metadata_len]
    buffers = [view[offset:offset + length] for offset, length in layout]
    try:
        return _RefResolvingUnpickler(io.BytesIO(metadata), id_to_ref, buffers=buffers).load()
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"could not deserialise the object: {type(exc).__name__}: {exc}. If a module or class "
            "is missing, it must be importable in this process (install it on every node, or "
            "define it in the driver script so cloudpickle sends it by value)") from exc


def loads_bytes(data: bytes, *, id_to_ref: IdToRef | None = None) -> Any:
    """Rebuild a value sent inline (``SerializedObject.to_bytes``)."""
    return deserialize_from(data, id_to_ref=id_to_ref)


# ------------------------------------------------------------ error messages


def _members(obj: Any) -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        items = []
        for key, member in obj.items():
            items.append((f"[{key!r}]", member))
            items.append((f" key {key!r}", key))
        return items
    if isinstance(obj, (list, tuple)):
        return [(f"[{i}]", member) for i, member in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return [(" member", member) for member in obj]
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict):
        return [(f".{name}", member) for name, member in attributes.items()]
    return []


def _picklable(obj: Any) -> bool:
    try:
        cloudpickle.dumps(obj, protocol=PICKLE_PROTOCOL, buffer_callback=lambda _buffer: False)
        return True
    except Exception:
        return False


def _find_unpicklable(value: Any) -> tuple[str, Any]:
    """The deepest part of ``value`` that cannot be pickled, as (path, part)."""
    path, current = "value", value
    for _depth in range(_UNPICKLABLE_SEARCH_DEPTH_MAX):
        for suffix, member in _members(current)[:_UNPICKLABLE_SEARCH_MEMBERS_MAX]:
            if not _picklable(member):
                path, current = path + suffix, member
                break
        else:
            break
    return path, current


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _unpicklable_message(value: Any, exc: BaseException) -> str:
    try:
        path, part = _find_unpicklable(value)
    except Exception:  # the search is best effort; the original error still says a lot
        path, part = "value", value
    where = "" if path == "value" else f": {path} is a {_type_name(part)}"
    return (f"cannot serialise a value of type {_type_name(value)}{where} "
            f"({type(exc).__name__}: {exc}). Locks, sockets, open files, generators and "
            "similar process-bound objects cannot be sent to another process: create them "
            "inside the task or actor, or give the class __getstate__/__reduce__ that "
            "leaves them out.")
