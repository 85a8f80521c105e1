"""``lineagerun chaos``: fault-injection tools.

``lineagerun chaos proxy`` serves the Toxiproxy-compatible chaos proxy
(docs/chaos.md) until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal

import click

from lineagerun.core.chaos_api import is_loopback_host


@click.group("chaos")
def chaos() -> None:
    """Fault injection: the chaos proxy, scenarios (run) and the nemesis."""


@chaos.command("proxy")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of the HTTP API.")
@click.option("--port", default=8474, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the HTTP API (0: any free port; the bound port is printed).")
@click.option("--allow-remote", is_flag=True, default=False,
              help="Allow a non-loopback --host and non-loopback proxy listen addresses. "
                   "The API has no authentication: only on a trusted network.")
@click.option("--seed", type=int, default=None, help="Seed toxicity and jitter draws (reproducible runs).")
def proxy(host: str, port: int, allow_remote: bool, seed: int | None) -> None:
    """Serve the Toxiproxy v2 HTTP API (toxiproxy-python drives it) until SIGINT/SIGTERM."""
    if not allow_remote and not is_loopback_host(host):
        raise click.BadParameter(
            f"{host!r} is not a loopback address and the chaos proxy API has no authentication; "
            "use 127.0.0.1, or pass --allow-remote on a trusted network", param_hint="--host")
    asyncio.run(_serve(host, port, allow_remote, seed))


async def _serve(host: str, port: int, allow_remote: bool, seed: int | None) -> None:
    import random

    from lineagerun.chaos.proxy.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def ready(bound_port: int) -> None:
        click.echo(f"chaos proxy: Toxiproxy API on http://{host}:{bound_port}", nl=True)

    try:
        await serve(host, port, stop=stop, allow_remote=allow_remote,
                    rng=random.Random(seed) if seed is not None else None, on_ready=ready)
    except OSError as err:
        raise click.ClickException(f"cannot serve the chaos proxy on {host}:{port}: {err}") from None
    click.echo("chaos proxy: stopped")

from lineagerun.cli.chaos_run import nemesis as _nemesis, run as _run  # noqa: E402

chaos.add_command(_run)
chaos.add_command(_nemesis)
