"""`aiswitch audit [--since WHEN] [--json]`: read the audit log (`aiswitch.state.audit`).

One line per record: local time, user and pid, the action, and what it touched; `--json`
prints the records as stored, one JSON object per line.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

_FIXED = ("ts", "user", "uid", "pid", "action")


def audit(
    since: str | None = typer.Option(
        None, "--since", help="Only records from then on: 30m, 2h, 1d, or a local time."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per record."),
) -> None:
    """Who changed presets, revealed keys, started or cancelled runs, set quotas, imported."""
    import json

    from aiswitch.cli.logs_cmd import parse_since
    from aiswitch.cli.terminal import shown
    from aiswitch.errors import StateError
    from aiswitch.home import Home
    from aiswitch.state.audit import audit_path, read_records

    start = parse_since(since)
    home = Home.current()
    try:
        for record in read_records(home):
            moment = _moment(record.get("ts"))
            if start is not None and (moment is None or moment < start):
                continue
            if as_json:
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
                continue
            when = moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "?"
            rest = " ".join(f"{k}={_text(v)}" for k, v in record.items() if k not in _FIXED)
            sys.stdout.write(
                shown(
                    f"{when} {record.get('user')}[{record.get('pid')}] {record['action']} {rest}"
                ).rstrip()
                + "\n"
            )
    except OSError as exc:
        raise StateError(f"cannot read {audit_path(home)}: {exc.strerror}") from None


def _moment(value: Any) -> Any:
    from datetime import datetime

    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items())
    return str(value)


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)
