"""The global `-v` / `-q` options: how much aiswitch says on stderr besides its results.

`aiswitch -q COMMAND …`: no live view, no status lines, no notes (`run RUN` from `logs`,
"no agent process is running"); results on stdout, warnings and errors on stderr as ever.
`aiswitch -v COMMAND …`: the parent's log records (what goes to `logs/coordinator.log`)
are also printed on stderr, from INFO on; `-vv` from DEBUG (and the coordinator log keeps
DEBUG records too). They go before the command (`aiswitch -v run …`), and are taken off
the command line by `take` before anything else reads it, so every path (typer, and the
fast paths of `aiswitch.cli.entry`) sees the same command line. Standard library only.
"""

from __future__ import annotations

import sys

QUIET, NORMAL, VERBOSE, DEBUG = -1, 0, 1, 2
level = NORMAL
_FLAGS = {"-q": QUIET, "--quiet": QUIET, "-v": VERBOSE, "--verbose": VERBOSE, "-vv": DEBUG}


def take(args: list[str]) -> list[str]:
    """`args` without its leading `-v`/`-vv`/`-q`; the level they ask for is set."""
    rest = list(args)
    asked = NORMAL
    while rest and rest[0] in _FLAGS:
        flag = _FLAGS[rest.pop(0)]
        asked = QUIET if flag == QUIET else min(DEBUG, max(asked, 0) + flag)
    if asked != NORMAL:
        set_level(asked)
    return rest


def set_level(value: int) -> None:
    global level
    level = value
    if value >= VERBOSE:
        _log_to_stderr(value)


def quiet() -> bool:
    return level <= QUIET


def note(text: str) -> None:
    """An informational line on stderr (not a warning, not an error): left out by -q."""
    if level > QUIET:
        sys.stderr.write(text + "\n")


def _log_to_stderr(value: int) -> None:
    import logging

    root = logging.getLogger("aiswitch")
    if any(getattr(h, "_aiswitch_stderr", False) for h in root.handlers):
        return
    from aiswitch.logs import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler._aiswitch_stderr = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("aiswitch: %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    handler.setLevel(logging.DEBUG if value >= DEBUG else logging.INFO)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if value >= DEBUG else logging.INFO)
