"""``ObjectRef``: a reference to an object of the cluster (Ray: ``ray.ObjectRef``)."""

from __future__ import annotations

import concurrent.futures

from lineagerun.core.ids import ObjectID, TaskID


# This process's record of refs made and dropped (queue.SimpleQueue: its put
# is safe to call from __del__); None until the CoreWorker tracks refs.
ref_events = None
# A worker's set of object ids that left the process inside something it
# pickled (a return value, an argument, a put, a function): somebody else may
# hold them, so the worker never releases them. None: not recorded (drivers).
escaped_ids = None


class ObjectRef:
    """A future value, named by its deterministic ``ObjectID``.

    Hashable and comparable by id, so it can be a dict key; pickles as its id
    (a ref sent to another process names the same object)."""

    __slots__ = ("_id", "_tracked", "__weakref__")

    def __init__(self, object_id: ObjectID | bytes):
        if not isinstance(object_id, ObjectID):
            object_id = ObjectID(object_id)
        self._id = object_id
        self._tracked = False

    @classmethod
    def _owned(cls, object_id: ObjectID) -> "ObjectRef":
        """A ref to an object this driver made (put or task return): when
        the last such ref goes, the driver releases the object. Refs read
        back from values or ``from_hex`` are borrowed and release nothing."""
        ref = cls(object_id)
        events = ref_events
        if events is not None:
            ref._tracked = True
            events.put((True, object_id.binary()))
        return ref

    def __del__(self):
        events = ref_events
        if events is not None and self._tracked:
            try:
                events.put((False, self._id.binary()))
            except Exception:  # interpreter shutting down
                pass

    @classmethod
    def from_hex(cls, text: str) -> "ObjectRef":
        """The ref of an object named by ``hex()`` (e.g. printed by another driver)."""
        return cls(ObjectID.from_hex(text))

    @classmethod
    def from_binary(cls, binary: bytes) -> "ObjectRef":
        return cls(ObjectID(binary))

    @classmethod
    def nil(cls) -> "ObjectRef":
        return cls(ObjectID.nil())

    def binary(self) -> bytes:
        return self._id.binary()

    def hex(self) -> str:
        return self._id.hex()

    def object_id(self) -> ObjectID:
        return self._id

    def task_id(self) -> TaskID:
        return self._id.task_id()

    def is_nil(self) -> bool:
        return self._id.is_nil()

    def __eq__(self, other: object) -> bool:
        return type(other) is ObjectRef and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __reduce__(self):
        binary = self._id.binary()
        if escaped_ids is not None:
            escaped_ids.add(binary)
        return (ObjectRef.from_binary, (binary,))

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    def future(self) -> concurrent.futures.Future:
        """A ``concurrent.futures.Future`` of the value, as Ray's
        ``ObjectRef.future()``: its result is what ``get`` would return (or
        raise); no thread waits for it."""
        from lineagerun.api import context

        return context.core_worker().get_future(self)

    def __await__(self):
        # ``await ref`` (async actors, a driver's asyncio code), as Ray: the
        # event loop keeps serving other calls while the node answers.
        import asyncio

        return asyncio.wrap_future(self.future()).__await__()


def ref_to_id(obj) -> bytes | None:
    """Serialisation hook: the id of a nested ``ObjectRef``, else None."""
    if type(obj) is not ObjectRef:
        return None
    binary = obj._id.binary()
    if escaped_ids is not None:
        escaped_ids.add(binary)
    return binary


id_to_ref = ObjectRef.from_binary
