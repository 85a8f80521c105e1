"""``python -m lineagerun.chaos.proxy [--host H] [--port P] [--allow-remote]``:
the same as ``lineagerun chaos proxy``."""

from lineagerun.cli.chaos import proxy

if __name__ == "__main__":
    proxy(prog_name="python -m lineagerun.chaos.proxy")
