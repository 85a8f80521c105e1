"""The replica core's settings (from the process's command line)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaSettings:
    shard: int
    replica_id: str
    address: str
    cluster_id: str = ""                 # from IDENTITY; "" when new
    heartbeat_interval_ms: int = 100
    log_retention_entries: int = 100_000
    max_key_bytes: int = 4096
    max_value_bytes: int = 16 * 1024 * 1024
    ops_per_write_max: int = 10_000
    entries_per_batch_max: int = 1_000
    send_window_entries: int = 10_000    # unacked entries in flight per link
    resend_after_ms: int = 1_000         # no ack progress: rewind and resend
    join_timeout_ms: int = 2_000
    # The process learns the shard count from the coordinator just after it
    # joins; until then it cannot check key routing, so it refuses client
    # calls (retriable) rather than accept a misrouted key.
    require_shard_count: bool = False
