"""`aiswitch top`: `aiswitch ps`, live, with totals; `q` quits.

Each frame is `ps_cmd.collect` (the same rows as `ps`) drawn by `ps_cmd.table` with a
totals line. CPU % is measured over the last interval (as top(1) does), from each process's
CPU seconds in two frames; the first frame shows the lifetime figure `ps` shows.

On a terminal the frames replace each other on the alternate screen (the terminal is as it
was after `q` or Ctrl-C). Keys are read from stdin in cbreak mode (no Enter needed), by
waiting on stdin with the refresh interval as the timeout: a key press ends the wait at
once, nothing spins. When stdout is not a terminal (`aiswitch top | cat`, a script) there
is no screen to refresh: one frame is printed, with its totals, and top exits (as
`top -b -n 1` does); `--once` asks for that on a terminal too.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from typing import Any

import typer

from aiswitch.errors import UsageError

QUIT_KEYS = frozenset(b"qQ")


def frame(rows: list[dict[str, Any]], interval: float, live: bool, room: int) -> Any:
    """The header line (time, processes, runs, the keys) over `ps`'s table with totals,
    `room` cells wide at most."""
    from rich.console import Group
    from rich.text import Text

    from aiswitch.cli import ps_cmd

    sums = ps_cmd.summed(rows)
    head = (
        f"aiswitch top · {time.strftime('%H:%M:%S')} · {sums['processes']} agent "
        f"process{'es' if sums['processes'] != 1 else ''} in {sums['runs']} "
        f"run{'s' if sums['runs'] != 1 else ''}"
    )
    if live:
        head += f" · every {interval:g}s · q quits"
    if not rows:
        return Group(Text(head), Text("no agent process is running", style="dim"))
    return Group(Text(head), ps_cmd.table(rows, room, totals=True))


class CpuRate:
    """CPU % of each process over the time since the previous frame (its lifetime
    figure the first time a process is seen)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[Any, Any], tuple[float, float]] = {}

    def apply(self, rows: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        seen = {}
        for row in rows:
            busy = row.get("cpu_s")
            if busy is None:
                continue
            key = (row.get("pid"), row.get("create_time"))
            before = self.seen.get(key)
            if before is not None and now > before[0]:
                row["cpu_percent"] = round(100 * (busy - before[1]) / (now - before[0]), 1)
            seen[key] = (now, busy)
        self.seen = seen


@contextlib.contextmanager
def keys() -> Iterator[int | None]:
    """stdin's descriptor in cbreak mode (restored after), or None when stdin is not a
    terminal (then only Ctrl-C quits)."""
    if not sys.stdin.isatty():
        yield None
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def wait_key(fd: int | None, timeout: float) -> bool:
    """Wait up to `timeout` for a key; True when it is one that quits."""
    if fd is None:
        time.sleep(timeout)
        return False
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return False
        data = os.read(fd, 64)
        if not data:  # the terminal went away
            return True
        if QUIT_KEYS.intersection(data):
            return True
    return False


def top(
    interval: float = typer.Option(1.0, "--interval", "-i", help="Seconds between refreshes."),
    once: bool = typer.Option(False, "--once", help="Print one frame and exit."),
) -> None:
    """`aiswitch ps`, live, with totals; q quits. Piped: one frame, then exit."""
    from rich.console import Console

    from aiswitch.cli.ps_cmd import collect
    from aiswitch.home import Home
    from aiswitch.state.store import StateStore

    if not interval > 0 or interval > 3600:
        raise UsageError(f"--interval {interval:g} is out of range", hint="give 0.1 to 3600 s")
    store = StateStore(Home.current())
    console = Console()
    if once or not console.is_terminal:
        from aiswitch.cli.runs_cmd import LIST_PIPED_WIDTH

        if not console.is_terminal:
            console = Console(width=LIST_PIPED_WIDTH)
        console.print(frame(collect(store), interval, False, console.width), highlight=False)
        return
    from rich.live import Live

    rate = CpuRate()
    with (
        keys() as fd,
        Live(console=console, screen=True, auto_refresh=False) as live,
        contextlib.suppress(KeyboardInterrupt),
    ):
        while True:
            rows = collect(store)
            rate.apply(rows)
            live.update(frame(rows, interval, True, console.width), refresh=True)
            if wait_key(fd, interval):
                break


def register(app: typer.Typer) -> None:
    app.command("top")(top)
