"""`aiswitch logs AGENT_ID | --run RUN [--since WHEN]`: a run's agent logs, in time order.

The logs are `logs/agents/<run_id>/<agent-id>.log`; each line is printed after its agent
id. Without `--run`, AGENT_ID's newest run is read (its id goes to stderr).
"""

from __future__ import annotations

import glob
import re
import sys
from datetime import datetime, timedelta
from typing import Any

import typer

from aiswitch.cli import completion
from aiswitch.errors import UsageError

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str | None) -> datetime | None:
    """`30m`, `2h`, `1d` ago, or a local time (`2026-12-04`, `2026-12-04T13:05`)."""
    if value is None:
        return None
    found = _DURATION.fullmatch(value.strip())
    if found:
        delta = timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
        return datetime.now().astimezone() - delta
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(
            f"--since: {value!r} is neither a time nor a duration",
            hint="use 30m, 2h, 1d, 2026-12-04 or 2026-12-04T13:05",
        ) from None
    return moment if moment.tzinfo else moment.astimezone()


def _mtime(path: Any) -> int:
    try:
        return int(path.stat().st_mtime_ns)
    except OSError:
        return 0


def logs(
    agent_id: str | None = typer.Argument(
        None, help="One agent process (e.g. mock.p1).", autocompletion=completion.agent_ids
    ),
    run: str | None = typer.Option(
        None, "--run", help="The run whose logs to read.", autocompletion=completion.run_ids
    ),
    since: str | None = typer.Option(
        None, "--since", help="Only lines from then on: 30m, 2h, 1d, or a local time."
    ),
) -> None:
    """An agent's log, or all of a run's agent logs in time order."""
    from aiswitch.home import Home
    from aiswitch.state.runs import check_run_id
    from aiswitch.supervisor.logs import merged, run_logs

    if agent_id is None and run is None:
        raise UsageError("give an agent id, --run RUN, or both")
    start = parse_since(since)
    home = Home.current()
    if run is None:
        assert agent_id is not None  # refused above when both are missing
        # Newest by when its log was last written: two run ids of the same second sort
        # by their random part, not by time.
        found = home.agent_logs.glob(f"*/{glob.escape(agent_id)}.log")
        runs = [p.parent.name for p in sorted(found, key=_mtime, reverse=True)]
        if not runs:
            raise UsageError(
                f"no log of agent {agent_id!r}",
                hint="agent ids look like mock.p1; see `aiswitch ps`",
            )
        run = runs[0]
        sys.stderr.write(f"run {run}\n")
    check_run_id(run)
    paths = run_logs(home, run)
    if not paths:
        raise UsageError(f"run {run} has no agent logs", hint="`aiswitch runs list` shows runs")
    if agent_id is not None:
        if agent_id not in paths:
            raise UsageError(
                f"run {run} has no log of agent {agent_id!r}",
                hint=f"its agents: {', '.join(paths)}",
            )
        paths = {agent_id: paths[agent_id]}
    from aiswitch.cli.terminal import shown

    write: Any = sys.stdout.write
    width = max(len(a) for a in paths)
    for line in merged(paths, start):
        write(f"{line.agent_id:<{width}} | {shown(line.text)}\n")


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
