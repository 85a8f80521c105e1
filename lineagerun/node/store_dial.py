"""Where a node manager dials a control-store replica advertised at
``host:port``.

Normally the advertised address itself. A chaos cluster
(``lineagerun.chaos.runtime_links``) gives every node its own proxy in front
of every replica (``node:<i>->replica:S:I``), so that isolating one node cuts
its heartbeat records and lineage writes too, not only its links to other
nodes. The launcher names a dial-map file (``lineagerun.control.dial_map``:
``{"advertised host:port": "proxy host:port"}``) in
``LINEAGERUN_STORE_DIAL_MAP``; the node's control-store client looks every
replica up there when it opens a channel to it. The file is rewritten when a
replica is added and read again when it changed; a replica it does not name
is dialled directly (not faultable per node until the map names it).
The coordinator link needs no map: the node is given its proxy's address
(``--control-store``).
"""

from __future__ import annotations

import os

from lineagerun.control.dial_map import DialMapFile

STORE_DIAL_MAP_ENV = "LINEAGERUN_STORE_DIAL_MAP"


def store_dial(setting: str | None = None) -> DialMapFile | None:
    """The replica address map of this node (from ``LINEAGERUN_STORE_DIAL_MAP``
    unless ``setting`` is given); None: dial advertised addresses."""
    setting = os.environ.get(STORE_DIAL_MAP_ENV, "") if setting is None else setting
    return DialMapFile(setting) if setting else None
