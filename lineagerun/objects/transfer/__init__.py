"""Object transfer between nodes: a peer pulls a sealed object in chunks over
one gRPC stream (see docs/objects.md, "Transfer between nodes").

- ``ObjectManagerServicer`` (server.py): serves ``Pull``/``Has`` from a node's
  ``LocalObjectStore``; the node manager adds it to its grpc.aio server.
- ``ObjectPuller`` (puller.py): pulls into the local store; one transfer per
  object however many callers, bounded concurrent transfers, next source on
  failure, stall timeout. Its decisions live in ``lineagerun.core.pull_manager``.
"""

from lineagerun.objects.transfer.puller import (
    STALL_TIMEOUT_MS_DEFAULT,
    ObjectPuller,
    PulledObject,
    PullerStats,
    token_channel_factory,
)
from lineagerun.objects.transfer.server import (
    CHUNK_SIZE_DEFAULT_BYTES,
    CHUNK_SIZE_MAX_BYTES,
    ObjectManagerServicer,
    PayloadInfo,
)

__all__ = [
    "CHUNK_SIZE_DEFAULT_BYTES", "CHUNK_SIZE_MAX_BYTES", "STALL_TIMEOUT_MS_DEFAULT", "ObjectManagerServicer",
    "ObjectPuller", "PayloadInfo", "PulledObject", "PullerStats", "token_channel_factory",
]
