"""Where a control-store process dials a peer it knows by its advertised
address (``--dial-map FILE``).

A replica advertises one address to the coordinator, and everybody learns
it from the chain configuration. A chaos cluster makes that address a proxy
(``lineagerun.chaos.control_store_links``) and gives each link its own proxy
too, so that one link (``replica:0:1->replica:0:2``,
``coordinator->replica:0:2``) can be slowed or cut alone: the dialing
process then looks the advertised address up in its map file, a JSON object
``{"advertised host:port": "host:port to dial"}``. The launcher rewrites the
file when a replica is added; it is read again when it changed, at the next
new channel (channels are made once per peer, so this is rare).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from lineagerun.exceptions import ConfigurationError

# Bounds the file read on each change (it holds a few entries per replica).
DIAL_MAP_BYTES_MAX = 1024 * 1024

_lock = threading.Lock()
_path: Path | None = None
_loaded: tuple[float, dict[str, str]] = (-1.0, {})


def configure(path: str | os.PathLike | None) -> None:
    """Use the map in ``path`` (None: dial advertised addresses as they are)."""
    global _path, _loaded
    with _lock:
        _path = Path(path) if path is not None else None
        _loaded = (-1.0, {})


def dial_address(address: str) -> str:
    """The address to dial for the peer advertised at ``address``."""
    global _loaded
    with _lock:
        if _path is None:
            return address
        try:
            mtime = _path.stat().st_mtime
        except FileNotFoundError:
            return address
        if mtime != _loaded[0]:
            _loaded = (mtime, _read(_path))
        return _loaded[1].get(address, address)


class DialMapFile:
    """One map file for one client (``ControlStoreClient(address_map=...)``):
    the module functions above serve a whole process (a replica, the
    coordinator), this serves a node manager's own control-store client
    (``lineagerun.node.store_dial``). Read again when the file changed; an
    address the map does not name is dialled as it is."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._loaded: tuple[tuple[int, int], dict[str, str]] = ((-1, -1), {})

    def __call__(self, address: str) -> str:
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                return address
            # The writer replaces the file (a new inode): two rewrites within
            # one mtime tick still differ.
            version = (stat.st_mtime_ns, stat.st_ino)
            if version != self._loaded[0]:
                self._loaded = (version, _read(self.path))
            return self._loaded[1].get(address, address)


def _read(path: Path) -> dict[str, str]:
    text = path.read_text()[:DIAL_MAP_BYTES_MAX]
    try:
        mapping = json.loads(text)
    except ValueError as err:
        raise ConfigurationError(f"dial map {path} is not JSON ({err}); the launcher writes it atomically") from None
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in mapping.items()):
        raise ConfigurationError(f"dial map {path} must map address strings to address strings")
    return mapping


def write_dial_map(path: str | os.PathLike, mapping: dict[str, str]) -> None:
    """Atomically replace the map file (the launcher's side)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(mapping, indent=1, sort_keys=True))
    os.replace(tmp, path)
