"""``lineagerun chaos nemesis link``: cut, heal or slow one control-store
link (``replica:0:1->replica:0:2``, ``coordinator->replica:0:2``, ...) of a
store started with chaos proxies on its links, from another process."""

from __future__ import annotations

import click

from lineagerun.exceptions import ConfigurationError, InvalidArgumentError

TOXIC_TYPES = ["latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data"]


@click.command("link")
@click.argument("action", type=click.Choice(["cut", "heal", "toxic"]))
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, exists=True),
              help="The store's directory (holds chaos-links.json); for Cluster(chaos=True): SESSION/control.")
@click.option("--link", "link_name", required=True,
              help="replica:S:I->replica:S:J, coordinator->replica:S:I, replica:S:I->coordinator, "
                   "clients->replica:S:I, or replica:S:I (every link of that replica).")
@click.option("--type", "toxic_type", type=click.Choice(TOXIC_TYPES), default=None, help="For toxic.")
@click.option("--attr", "attrs", multiple=True, help="name=integer, e.g. --attr latency=100 --attr jitter=50")
@click.option("--stream", type=click.Choice(["downstream", "upstream"]), default="downstream", show_default=True)
def link(action: str, directory: str, link_name: str, toxic_type: str | None, attrs: tuple[str, ...],
         stream: str) -> None:
    """Cut, heal (enable, toxics removed) or add a toxic to one control-store link."""
    from lineagerun.chaos.control_store_links import link_action

    from lineagerun.cli.chaos_run import toxic_attributes

    attributes = toxic_attributes(attrs)
    try:
        click.echo(link_action(directory, link_name, action, toxic_type or "", attributes, stream))
    except (InvalidArgumentError, ConfigurationError) as err:
        raise click.ClickException(str(err)) from None
