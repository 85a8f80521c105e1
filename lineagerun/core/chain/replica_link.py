"""The sending side of one replication link (us -> successor or joiner)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lineagerun.rpc import common_pb2


class LinkState(enum.Enum):
    HELLO = "hello"                    # sent an empty batch; waiting for the first ack
    STREAMING = "streaming"            # the successor's log matches ours up to acked_seq
    SNAPSHOT_SENT = "snapshot_sent"    # waiting for the ack of a snapshot


@dataclass
class Link:
    target: common_pb2.ReplicaInfo
    to_joiner: bool                    # the tail does not wait for a joiner's acks
    state: LinkState = LinkState.HELLO
    next_seq: int = 1                  # next entry to send
    acked_seq: int = 0                 # last entry the successor applied, in agreement with our log
    snapshot_seq: int = 0              # the entry of the snapshot in flight (SNAPSHOT_SENT)
    last_progress_ms: int = 0          # last send from idle or ack progress
    joiner_included: bool = False      # the tail waits for this joiner's acks to commit

    def reset(self, now_ms: int) -> None:
        self.state = LinkState.HELLO
        self.last_progress_ms = now_ms
