"""The `aiswitch` console script.

`aiswitch --version` is answered here, before typer, rich or pydantic are imported,
so that it costs little more than starting Python. So is a JSON token report whose output
is already recorded for unchanged inputs (`aiswitch.tokens.fastpath`: a byte-for-byte replay
of what the typer path printed; anything it does not answer exactly goes to typer, which
records it for next time). Everything else goes to the typer app; user errors
(`AiswitchError`) become one line on stderr and their exit code, with no traceback.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        from aiswitch import __version__

        sys.stdout.write(f"aiswitch {__version__}\n")
        return
    if args[:1] == ["tokens"]:
        from aiswitch.tokens import fastpath

        if fastpath.try_fast_report(args):
            return
        fastpath.current_args = list(args)
        try:
            code = _run(args)
        finally:
            fastpath.current_args = None
        sys.exit(code)
    sys.exit(_run(args))


def _run(args: list[str]) -> int:
    from aiswitch.cli.app import run_app

    return run_app(args)


if __name__ == "__main__":
    main()
