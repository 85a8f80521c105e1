"""The `lineagerun` command. Each component adds its own group in its own
module (``lineagerun/cli/<component>.py``) and registers it below."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lineagerun")
def cli() -> None:
    """lineagerun: a distributed task and actor runtime with fault tolerance by lineage replay."""


def _register() -> None:
    import importlib

    for module_name, attr in _COMMANDS:
        module = importlib.import_module(module_name)
        cli.add_command(getattr(module, attr))


# (module, click command or group) pairs; components append theirs here.
_COMMANDS: list[tuple[str, str]] = [
    ("lineagerun.cli.chaos", "chaos"),
    ("lineagerun.cli.control_store", "control_store"),
    ("lineagerun.cli.demo", "demo"),
    ("lineagerun.cli.state", "lineage_command"),
    ("lineagerun.cli.state", "list_command"),
    ("lineagerun.cli.state", "get_command"),
    ("lineagerun.cli.state", "summary_command"),
    ("lineagerun.cli.state", "timeline_command"),
    ("lineagerun.cli.logs", "logs_command"),
    ("lineagerun.cli.cluster", "start"),
    ("lineagerun.cli.cluster", "stop"),
    ("lineagerun.cli.cluster", "status"),
]


def main() -> None:
    _register()
    cli()


if __name__ == "__main__":
    main()
