"""`aiswitch doctor [--json] [--online] [--fix]`: what is wrong, and the command that fixes it.

The checks are `aiswitch.coordinator.doctor.examine` (it changes nothing); this prints one
line per finding, with the fix under anything that is not ok, and exits 4 (the state exit
code) when any finding is a problem, 0 otherwise (notes and warnings do not fail it).
`--fix` first applies the repairs that are safe (`repair`), says what it did, then checks.
"""

from __future__ import annotations

import sys

import typer

_MARK = {"ok": "ok     ", "note": "note   ", "warning": "warning", "problem": "problem"}


def doctor(
    as_json: bool = typer.Option(False, "--json", help="One JSON document."),
    online: bool = typer.Option(False, "--online", help="Also reach each provider's base URL."),
    fix: bool = typer.Option(False, "--fix", help="Repair what is safe to repair, then check."),
) -> None:
    """Check the home, state files, locks, sockets, processes, CLIs, presets and disk."""
    import json
    import os

    from aiswitch.cli import exitcodes
    from aiswitch.cli.terminal import shown
    from aiswitch.coordinator.doctor import examine, repair
    from aiswitch.home import Home

    home = Home.current()
    repaired = repair(home) if fix and not home.problems() and home.root.exists() else []
    findings = examine(home, os.environ, online=online)
    failed = any(f.level == "problem" for f in findings)
    if as_json:
        document = {
            "ok": not failed,
            "home": str(home.root),
            "repaired": repaired,
            "findings": [f.as_dict() for f in findings],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        for line in repaired:
            sys.stdout.write(shown(f"fixed   {line}") + "\n")
        for finding in findings:
            sys.stdout.write(
                shown(f"{_MARK[finding.level]} {finding.check}: {finding.what}") + "\n"
            )
            if finding.fix and finding.level != "ok":
                sys.stdout.write(shown(f"        fix: {finding.fix}") + "\n")
    if failed:
        raise typer.Exit(exitcodes.STATE)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
