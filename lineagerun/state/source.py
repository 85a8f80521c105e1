"""Where the state commands read records from.

Two sources behind one small interface (``get_many`` and a paged ``scan``):

- ``LiveSource``: a running control store, through ``ControlStoreClient``
  (reads are served by each shard's tail, scans come a page at a time);
- ``DirectorySource``: post mortem, a control store's directory
  (``DIR/shard-*/replica-*/db``) after the cluster is gone (or while it still
  runs). Per shard it reads the replica that applied the most entries, opened
  read-only, so a replica process that still holds the database is not
  disturbed and nothing on disk changes.

``MemorySource`` (a sorted dict) serves unit tests of the reading logic.
"""

from __future__ import annotations

import bisect
import heapq
import json
import os
import re
import zlib
from pathlib import Path
from typing import Iterator, Protocol, Sequence

from lineagerun.exceptions import ConfigurationError, InvalidArgumentError

# Keys per scan page: the control store's page bound (docs/control-store.md).
SCAN_PAGE_KEYS = 1_000
# Deadline of a live read when the caller gives none: long enough to ride
# out a failover (about 1 s), short enough that a dead cluster is reported
# promptly on the command line.
LIVE_TIMEOUT_S_DEFAULT = 10.0
SESSIONS_ROOT_DEFAULT = "/tmp/lineagerun"
SESSION_FILE_NAME = "session.json"
# Replica data keys carry this prefix inside RocksDB
# (lineagerun.core.chain.replica_storage).
_DATA_PREFIX = b"d"
_META_APPLIED = b"m/applied"
_META_SNAPSHOT_IN_PROGRESS = b"m/snapshot_in_progress"
_SHARD_DIR = re.compile(r"^shard-(\d+)$")
_REPLICA_DIR = re.compile(r"^replica-(\d+)$")


class Source(Protocol):
    description: str

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]: ...

    def scan(self, prefix: bytes, page_keys: int = SCAN_PAGE_KEYS) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) under ``prefix`` in key order, fetched lazily."""
        ...

    def close(self) -> None: ...


class _Closing:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------- memory


class MemorySource(_Closing):
    description = "memory"
    local = True  # reads cost no round trip

    def __init__(self, items: dict[bytes, bytes] | None = None):
        self._items = dict(items or {})
        self._keys = sorted(self._items)

    def put(self, key: bytes, value: bytes) -> None:
        if key not in self._items:
            bisect.insort(self._keys, key)
        self._items[key] = value

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return [self._items.get(k) for k in keys]

    def scan(self, prefix: bytes, page_keys: int = SCAN_PAGE_KEYS) -> Iterator[tuple[bytes, bytes]]:
        index = bisect.bisect_left(self._keys, prefix)
        while index < len(self._keys) and self._keys[index].startswith(prefix):
            key = self._keys[index]
            yield key, self._items[key]
            index += 1

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------- live


class LiveSource(_Closing):
    """A running control store. Owns the client it creates."""

    local = False  # every read is a round trip

    def __init__(self, address: str, token: str | None, *, timeout_s: float = LIVE_TIMEOUT_S_DEFAULT, client=None):
        from lineagerun.control.client import ControlStoreClient

        self.description = f"control store at {address}"
        self._owned = client is None
        self.client = client if client is not None else ControlStoreClient(address, token, timeout_s=timeout_s)

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        # One routing per batch and a page per shard round trip: 50,000
        # keys take ~0.3 s (measured for the control-store follow-ups).
        return self.client.get_many(list(keys))

    def scan(self, prefix: bytes, page_keys: int = SCAN_PAGE_KEYS) -> Iterator[tuple[bytes, bytes]]:
        # scan_prefix reads the shard count without its retry loop; asking
        # through num_shards() first turns an unreachable cluster into
        # ControlStoreUnavailableError after the deadline.
        self.client.num_shards()
        return self.client.scan_prefix(prefix, page_keys=min(max(page_keys, 1), SCAN_PAGE_KEYS))

    def close(self) -> None:
        if self._owned:
            self.client.close()


# ------------------------------------------------------------------ post mortem


def find_replica_dbs(directory: Path) -> dict[int, list[Path]]:
    """shard -> its replicas' RocksDB directories under ``directory`` (a
    control-store directory, or a session directory one level above one)."""
    for candidate in [directory] + sorted(p for p in directory.iterdir() if p.is_dir()):
        found: dict[int, list[Path]] = {}
        for shard_dir in candidate.iterdir() if candidate.is_dir() else []:
            match = _SHARD_DIR.match(shard_dir.name)
            if not match or not shard_dir.is_dir():
                continue
            dbs = sorted(r / "db" for r in shard_dir.iterdir() if _REPLICA_DIR.match(r.name) and (r / "db").is_dir())
            if dbs:
                found[int(match.group(1))] = dbs
        if found:
            return found
    return {}


def _configured_shards(directory: Path) -> int | None:
    from lineagerun.rpc import common_pb2

    for config_file in (directory / "coordinator" / "config.pb", *directory.glob("*/coordinator/config.pb")):
        try:
            return common_pb2.ClusterConfig.FromString(config_file.read_bytes()).num_shards or None
        except (OSError, Exception):  # a torn or foreign file: fall back to the shard directories
            continue
    return None


def _open_read_only(path: Path):
    from rocksdict import AccessType, Options, Rdict

    try:
        return Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
    except Exception as err:  # rocksdict raises plain exceptions with RocksDB's message
        raise ConfigurationError(f"cannot open the control-store database {path} read-only: {err}") from None


class DirectorySource(_Closing):
    """A control store's directory, read-only. Per shard, the replica with the
    highest applied (seq, epoch) is read: it holds every acknowledged write
    its chain had (a chain applies entries in order head to tail)."""

    local = True  # reads cost no round trip

    def __init__(self, directory: str | os.PathLike):
        root = Path(directory).expanduser().absolute()
        if not root.is_dir():
            raise ConfigurationError(f"control-store directory {root} does not exist")
        dbs = find_replica_dbs(root)
        if not dbs:
            raise ConfigurationError(
                f"{root} holds no control-store replicas (expected {root}/shard-*/replica-*/db); pass the directory "
                f"given to `lineagerun control-store start --dir` or the session directory")
        self.num_shards = _configured_shards(root) or (max(dbs) + 1)
        missing = [s for s in range(self.num_shards) if s not in dbs]
        if missing:
            raise ConfigurationError(f"{root} lacks the replicas of shard(s) {missing} of {self.num_shards}; "
                                     f"their keys cannot be read")
        self.description = f"control-store directory {root}"
        self.chosen: dict[int, Path] = {}
        self._dbs = []
        try:
            for shard in range(self.num_shards):
                path, db = self._best_replica(dbs[shard])
                self.chosen[shard] = path
                self._dbs.append(db)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _best_replica(paths: list[Path]):
        best = None
        for path in paths:
            db = _open_read_only(path)
            if db.get(_META_SNAPSHOT_IN_PROGRESS) is not None:
                db.close()  # half-installed snapshot: incomplete state
                continue
            raw = db.get(_META_APPLIED) or b""
            applied = (int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:16], "big"))
            if best is None or applied > best[0]:
                if best is not None:
                    best[2].close()
                best = (applied, path, db)
            else:
                db.close()
        if best is None:
            raise ConfigurationError(f"no complete replica among {[str(p) for p in paths]}")
        return best[1], best[2]

    def _db_of(self, key: bytes):
        return self._dbs[zlib.crc32(key) % self.num_shards]

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return [self._db_of(k).get(_DATA_PREFIX + k) for k in keys]

    def _scan_one(self, db, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        full = _DATA_PREFIX + prefix
        for key, value in db.items(from_key=full):
            if not key.startswith(full):
                return
            yield key[1:], value

    def scan(self, prefix: bytes, page_keys: int = SCAN_PAGE_KEYS) -> Iterator[tuple[bytes, bytes]]:
        # A RocksDB iterator pages by itself; shards are merged by key.
        iterators = [self._scan_one(db, prefix) for db in self._dbs]
        if len(iterators) == 1:
            return iterators[0]
        return heapq.merge(*iterators, key=lambda item: item[0])

    def close(self) -> None:
        for db in self._dbs:
            try:
                db.close()
            except Exception:  # closing a read-only handle cannot lose data
                pass
        self._dbs = []


# --------------------------------------------------------------- resolution


def _session_address(sessions_root: Path) -> tuple[str, Path] | None:
    """(address, token file) of the newest session that recorded a live
    control store: its ``session.json``, or else the record of the
    ``ControlStoreCluster`` it started (``<session>/*/cluster.json``, while
    not stopped)."""
    try:
        sessions = sorted((p for p in sessions_root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime,
                          reverse=True)
    except OSError:
        return None
    for session in sessions:
        record = _json_file(session / SESSION_FILE_NAME)
        if record.get("control_store_address"):
            return record["control_store_address"], Path(record.get("token_file") or session / "token")
        for cluster_file in sorted(session.glob("*/cluster.json")):
            record = _json_file(cluster_file)
            address = (record.get("coordinator") or {}).get("address")
            if address and not record.get("stopped") and record.get("token_file"):
                return address, Path(record["token_file"])
    return None


def _newest_session(sessions_root: Path) -> Path | None:
    try:
        return max((p for p in sessions_root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, default=None)
    except OSError:
        return None


def _json_file(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def open_source(*, address: str | None = None, token: str | None = None, token_file: str | os.PathLike | None = None,
                dir: str | os.PathLike | None = None, timeout_s: float = LIVE_TIMEOUT_S_DEFAULT) -> Source:
    """The source a state call reads: ``dir`` (post mortem), else
    ``address`` (+ token), else ``LINEAGERUN_ADDRESS``, else the newest
    session under ``LINEAGERUN_SESSIONS_ROOT`` (default /tmp/lineagerun)."""
    from lineagerun.transport.auth import read_token_file

    if dir is not None and address is not None:
        raise InvalidArgumentError("give either a live cluster (address) or a control-store directory (dir), not both")
    if dir is not None:
        return DirectorySource(dir)
    if address is None:
        address = os.environ.get("LINEAGERUN_ADDRESS") or None
        if address is not None and token is None and token_file is None:
            token_file = os.environ.get("LINEAGERUN_TOKEN_FILE") or None
    if address is None:
        root = Path(os.environ.get("LINEAGERUN_SESSIONS_ROOT") or SESSIONS_ROOT_DEFAULT)
        found = _session_address(root)
        if found is None:
            newest = _newest_session(root)
            hint = f"; the newest session, {newest}, can be read post mortem with --dir {newest}" if newest else ""
            raise ConfigurationError(
                f"no cluster to read: pass --address HOST:PORT --token-file FILE (a live cluster) or --dir "
                f"CONTROL_STORE_DIR (post mortem), set LINEAGERUN_ADDRESS, or start a cluster (no running session "
                f"under {root}){hint}")
        address, found_token_file = found
        if token is None and token_file is None:
            token_file = found_token_file
    if token is None and token_file is not None:
        token = read_token_file(token_file)
    if token is None:
        raise ConfigurationError(f"no token for the cluster at {address}: pass --token-file FILE (the cluster's "
                                 f"token file, e.g. CONTROL_STORE_DIR/token) or set LINEAGERUN_TOKEN_FILE")
    return LiveSource(address, token, timeout_s=timeout_s)
