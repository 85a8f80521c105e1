"""Per-node shared-memory object store and serialisation (see docs/objects.md)."""

from lineagerun.objects.serialization import SerializedObject, deserialize_from, serialize
from lineagerun.objects.shm import new_session_id
from lineagerun.objects.store import (
    LocalObjectStore,
    PlacedObject,
    cleanup_session,
    cleanup_stale_sessions,
    read_object,
)

__all__ = [
    "LocalObjectStore", "PlacedObject", "SerializedObject", "cleanup_session", "cleanup_stale_sessions",
    "deserialize_from", "new_session_id", "read_object", "serialize",
]
