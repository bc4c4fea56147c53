"""The `aiswitch` console script.

`aiswitch --version` is answered here, before typer, rich or pydantic are imported,
so that it costs little more than starting Python. Everything else goes to the typer
app; user errors (`AiswitchError`) become one line on stderr and their exit code,
with no traceback.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        from aiswitch import __version__

        sys.stdout.write(f"aiswitch {__version__}\n")
        return
    from aiswitch.cli.app import run_app

    sys.exit(run_app(args))


if __name__ == "__main__":
    main()
