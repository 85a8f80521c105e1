"""Starting one node manager of a ``Cluster``: ``launcher.start_node`` with
extra environment variables (a chaos cluster's per-pair dial rewrite,
``lineagerun.node.peer_dial``), inherited by the node's workers too."""

from __future__ import annotations

import os
from pathlib import Path

from lineagerun.node import launcher
from lineagerun.transport.tls import child_env


def start_node(session_dir: Path, control_address: str, scheduler_address: str, *,
               env_extra: dict[str, str] | None = None, **node_args) -> tuple[launcher.LaunchedProcess, dict]:
    if not env_extra:
        return launcher.start_node(session_dir, control_address, scheduler_address, **node_args)
    node_id_hex = os.urandom(28).hex()
    argv = launcher.node_argv(session_dir, control_address, scheduler_address, node_id_hex, **node_args)
    env = {**child_env(node_args.get("tls")), **env_extra}
    process = launcher.launch(session_dir, f"node-{node_id_hex[:16]}", "node", argv, env=env)
    ready = launcher.wait_ready(process, session_dir / "nodes" / node_id_hex / "ready.json")
    return process, ready
