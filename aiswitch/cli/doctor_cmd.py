"""`aiswitch doctor`: check that the home can be trusted, and say how to fix it when not.

Today it checks the home's folders (`Home.problems`: a symbolic link, another user's, or
writable by others) and the links planted in them. It prints one line per
problem with the command that fixes it and exits 4 (the state exit code) when there is
any, 0 otherwise. It never changes anything itself.
"""

from __future__ import annotations

import sys

import typer


def doctor() -> None:
    """Check the aiswitch home's ownership, modes and links; print how to fix each problem."""
    from aiswitch.cli import exitcodes
    from aiswitch.home import Home

    home = Home.current()
    problems = home.problems()
    if not problems:
        sys.stdout.write(f"ok: {home.root} is yours, private, and holds no links\n")
        return
    for path, what, fix in problems:
        sys.stdout.write(f"problem: {path} {what}\n    fix: {fix}\n")
    sys.stdout.write(
        "aiswitch refuses a home that another user could change: fix these, then run it again\n"
    )
    raise typer.Exit(exitcodes.STATE)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
