"""Where a node manager dials a peer advertised at ``host:port``.

Normally the advertised address itself. A chaos cluster
(``lineagerun.chaos.pair_links``) gives every node its own proxy in front of
every other node, so that one pair of nodes can be cut apart: node i reaches
node j's advertised ``127.77.s.(j+1):P`` at ``127.(100+i).s.(j+1):P``, where
the proxy of the pair i -> j listens. The launcher says so through
``LINEAGERUN_PEER_DIAL_REWRITE="127.77.s.=127.101.s."`` (a host prefix and
its replacement); the node applies it to every peer session and object pull
it opens. The advertised addresses themselves (locations, ``node/`` records)
stay as they are: they name nodes, the rewrite only changes the route.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from lineagerun.exceptions import ConfigurationError

DIAL_REWRITE_ENV = "LINEAGERUN_PEER_DIAL_REWRITE"


def peer_dial(setting: str | None = None) -> Callable[[str], str]:
    """The address-to-dial function for this process (from
    ``LINEAGERUN_PEER_DIAL_REWRITE`` unless ``setting`` is given)."""
    setting = os.environ.get(DIAL_REWRITE_ENV, "") if setting is None else setting
    if not setting:
        return _unchanged
    prefix, sep, replacement = setting.partition("=")
    if not sep or not prefix or not replacement:
        raise ConfigurationError(f"{DIAL_REWRITE_ENV}={setting!r}: expected FROM_PREFIX=TO_PREFIX, "
                                 f"e.g. 127.77.1.=127.101.1.")

    def dial(address: str) -> str:
        return replacement + address[len(prefix):] if address.startswith(prefix) else address
    return dial


def _unchanged(address: str) -> str:
    return address
