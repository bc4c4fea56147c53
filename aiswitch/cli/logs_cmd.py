"""`aiswitch logs AGENT_ID | --run RUN [--since WHEN] [-f]`: a run's agent logs, in time
order.

The logs are `logs/agents/<run_id>/<agent-id>.log` and their rotated parts (`.1.gz`, …,
read first, oldest first); each line is printed after its agent id. Without `--run`,
AGENT_ID's newest run is read (its id goes to stderr).

`-f` follows the run while it runs: what is there first, then each line as it is written,
until the run ends. The logs are files the children write themselves, so there is no event
for a line; `logs -f` watches the run's control socket instead (`run.watch`: a task's
progress, status and usage are what makes an adapter write), reads the logs when an event
comes, and also every `FOLLOW_POLL_S` for lines written between events (a CLI's stderr). A
read is a `stat` and a read of what was added, so the poll costs next to nothing. When the
run ends (`run.ended`), the last lines are read and `logs -f` exits 0; a run that is not
running is printed once, with a line on stderr saying there is nothing to follow.
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
# While following: read the logs at least this often between the run's events.
FOLLOW_POLL_S = 0.5
# `run.watch` is answered inline by the run's loop.
WATCH_TIMEOUT_S = 10.0


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
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Print lines as they are written, until the run ends."
    ),
) -> None:
    """An agent's log, or all of a run's agent logs in time order."""
    from aiswitch.cli.verbosity import note
    from aiswitch.home import Home
    from aiswitch.state.runs import check_run_id
    from aiswitch.supervisor.log_follow import Follower
    from aiswitch.supervisor.logs import run_logs

    if agent_id is None and run is None:
        raise UsageError("give an agent id, --run RUN, or both")
    start = parse_since(since)
    home = Home.current()
    if run is None:
        assert agent_id is not None  # refused above when both are missing
        # Newest by when its log was last written: two run ids of the same second sort
        # by their random part, not by time.
        found = [
            *home.agent_logs.glob(f"*/{glob.escape(agent_id)}.log"),
            *home.agent_logs.glob(f"*/{glob.escape(agent_id)}.log.*.gz"),
        ]
        runs = [p.parent.name for p in sorted(found, key=_mtime, reverse=True)]
        if not runs:
            raise UsageError(
                f"no log of agent {agent_id!r}",
                hint="agent ids look like mock.p1; see `aiswitch ps`",
            )
        run = runs[0]
        note(f"run {run}")
    check_run_id(run)
    paths = run_logs(home, run)
    if not paths and not follow:
        raise UsageError(f"run {run} has no agent logs", hint="`aiswitch runs list` shows runs")
    if agent_id is not None and agent_id not in paths and not follow:
        raise UsageError(
            f"run {run} has no log of agent {agent_id!r}",
            hint=f"its agents: {', '.join(paths)}",
        )
    follower = Follower(home, run, agent_id)
    width = max([len(a) for a in follower.paths()] or [len(agent_id or "")])
    printer = _Printer(width)
    printer.write(follower.first(start))
    from aiswitch.supervisor.logs import KEEP_ROTATED, dropped_marker

    for agent, path in follower.paths().items():
        if dropped_marker(path).exists():
            note(f"{agent}: lines older than its {KEEP_ROTATED} rotated parts were rotated away")
    if not follow:
        printer.write(follower.pending())
        return
    import asyncio

    asyncio.run(_follow(home, run, follower, printer))


class _Printer:
    def __init__(self, width: int) -> None:
        self.width = width

    def write(self, lines: list[Any]) -> None:
        from aiswitch.cli.terminal import shown

        out = []
        for line in lines:
            self.width = max(self.width, len(line.agent_id))
            out.append(f"{line.agent_id:<{self.width}} | {shown(line.text)}\n")
        if out:
            sys.stdout.write("".join(out))
            sys.stdout.flush()


async def _follow(home: Any, run: str, follower: Any, printer: _Printer) -> None:
    import asyncio

    from aiswitch.cli.control import control_peer
    from aiswitch.cli.verbosity import note
    from aiswitch.errors import AiswitchError
    from aiswitch.state.store import StateStore

    try:
        peer = await control_peer(StateStore(home), run)
    except AiswitchError as exc:
        printer.write(follower.pending())
        note(f"{exc.one_line()}: nothing more to follow")
        return
    woken = asyncio.Event()
    ended = asyncio.Event()

    def events(_params: Any) -> None:
        woken.set()

    def end(_params: Any) -> None:
        ended.set()
        woken.set()

    peer.on_notification("run.events", events)
    peer.on_notification("run.ended", end)
    try:
        from aiswitch.rpc.errors import RpcError

        try:
            await peer.request("run.watch", None, timeout=WATCH_TIMEOUT_S)
        except (RpcError, OSError):
            ended.set()
        closed = asyncio.ensure_future(peer.wait_closed())
        while not ended.is_set():
            woke = asyncio.ensure_future(woken.wait())
            await asyncio.wait({woke, closed}, timeout=FOLLOW_POLL_S, return_when="FIRST_COMPLETED")
            woke.cancel()
            woken.clear()
            printer.write(follower.more())
            if closed.done():
                break
        closed.cancel()
    finally:
        await peer.close()
    # The run has ended and its children stopped: their last lines are written.
    printer.write(follower.more())
    printer.write(follower.pending())


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
