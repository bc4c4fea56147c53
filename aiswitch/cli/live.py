"""What `aiswitch run` shows a person while agents work (the results after: results_view).

The live view goes to stderr, and only when stderr is a terminal, so stdout carries the
results alone (exactly one JSON document with --json). A few tasks get a table, one row
each; a batch gets progress figures (done, running, waiting, failed, retried, tasks/s, ETA,
tokens and cost so far, pool sizes). A plan's view adds its tasks by state and the running
ones with their agent and last line. Without a terminal, `StatusLines` prints plain lines:
one per task change for a few tasks, one per tenth of a batch.

The table fits the terminal (aiswitch.cli.columns): the last line shrinks first, then the
columns in `LIVE_FIT.give_way` are left out, in that order; agent, status and elapsed stay.
Its last line is the last non-empty line an agent said, and the error of a task that failed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiswitch.cli.columns import Fit
from aiswitch.cli.results_view import (
    format_changes,
    format_costs,
    format_tokens,
    last_line,
    outcome_line,
    unpriced,
)
from aiswitch.cli.terminal import shown
from aiswitch.coordinator.results import AgentResult

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from aiswitch.coordinator.run import Run

STATUS_STYLE = {
    "pending": ("·", "dim"),
    "starting": ("…", "yellow"),
    "running": ("▶", "cyan"),
    "retrying": ("↻", "yellow"),
    "ok": ("✓", "green"),
    "failed": ("✗", "red"),
    "timeout": ("⏱", "red"),
    "cancelled": ("■", "magenta"),
    "skipped": ("↷", "dim"),
}
# Live refresh rate: smooth elapsed-time counters without burning a core.
REFRESH_PER_SECOND = 8
LAST_LINE_CHARS = 60
# The live table's columns. On a narrow terminal first the last
# line shrinks (down to 16 cells), then changes, preset and tokens are left out; the
# task (a plan's), agent, status and elapsed always stay.
COLUMNS = ("agent", "preset", "status", "elapsed", "tokens", "changes", "last output")
LIVE_FIT = Fit(give_way=("changes", "preset", "tokens"), shrink="last output", shrink_min=16)
# Up to this many tasks get a row each; more are a batch, shown as figures.
TABLE_MAX_ROWS = 12
# Without a terminal, a batch prints a line each time this share of it is done.
PLAIN_PROGRESS_STEP = 0.1
# A big plan's view lists at most this many of its running tasks.
PLAN_RUNNING_ROWS = 8


class LiveView:
    """A rich Live view of a run, fed by its events."""

    def __init__(self, console: Console, run: Run) -> None:
        from rich.live import Live

        self.console = console
        self.run = run
        self.results = run.result.results
        self.begun = time.monotonic()
        self.last_line: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.live = Live(
            get_renderable=self.render,
            console=console,
            refresh_per_second=REFRESH_PER_SECOND,
            transient=True,
        )

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def event(self, kind: str, result: AgentResult, text: str | None) -> None:
        now = time.monotonic()
        # By task: a plan runs many tasks on one agent.
        key = result.task_id
        if result.status == "starting":
            self.started.setdefault(key, now)
        if result.final:
            self.ended.setdefault(key, now)
        if result.final:
            # The error of a task that failed; else its output's last non-empty line.
            self.last_line[key] = outcome_line(result) or self.last_line.get(key, "")
        elif text and text.strip():
            self.last_line[key] = last_line(text)

    def render(self) -> RenderableType:
        from rich.console import Group
        from rich.text import Text

        summary = Text(progress_line(self.run, time.monotonic() - self.begun), style="dim")
        plan = self.run.result.mode == "plan"
        if len(self.results) > TABLE_MAX_ROWS:
            if plan:
                return Group(self.plan_graph(), summary)
            return summary
        if plan:
            return Group(self.table(), Text(by_state(self.results), style="dim"), summary)
        return Group(self.table(), summary)

    def plan_graph(self) -> RenderableType:
        """A big plan: its tasks by state, then the running ones (agent, last line)."""
        from rich.console import Group
        from rich.text import Text

        lines = [Text(by_state(self.results))]
        running = [r for r in self.results if r.status in ("starting", "running", "retrying")]
        for result in running[:PLAN_RUNNING_ROWS]:
            line = self.last_line.get(result.task_id, "")
            if len(line) > LAST_LINE_CHARS:
                line = line[: LAST_LINE_CHARS - 1] + "…"
            mark, style = STATUS_STYLE.get(result.status, ("?", ""))
            row = Text(f"{mark} ", style=style)
            row.append(f"{result.id or result.task_id}  {result.agent_id}  {line}")
            lines.append(row)
        if len(running) > PLAN_RUNNING_ROWS:
            lines.append(Text(f"… and {len(running) - PLAN_RUNNING_ROWS} more running"))
        return Group(*lines)

    def table(self) -> RenderableType:
        """One row per task; on a narrow terminal the columns give way (`LIVE_FIT`)."""
        from rich.text import Text

        from aiswitch.cli.columns import fitted_table

        plan = self.run.result.mode == "plan"
        now = time.monotonic()
        rows: list[dict[str, Any]] = []
        for result in self.results:
            mark, style = STATUS_STYLE.get(result.status, ("?", ""))
            start = self.started.get(result.task_id)
            end = self.ended.get(result.task_id, now)
            rows.append(
                {
                    "task": result.id or "",
                    "agent": result.agent_id,
                    "preset": result.preset or "-",
                    "status": Text(f"{mark} {result.status}", style=style),
                    "elapsed": f"{end - start:5.1f}s" if start else "  -  ",
                    # `~`: provisional running totals, until the ledger's figures come.
                    "tokens": ("~" if result.provisional else "") + format_tokens(result),
                    "changes": format_changes(result),
                    # An agent's text is data, never markup.
                    "last output": Text(self.last_line.get(result.task_id, "")),
                }
            )
        names = [*(("task",) if plan else ()), *COLUMNS]
        return fitted_table(names, rows, self.console.width, LIVE_FIT)


def by_state(results: list[AgentResult]) -> str:
    """`3 ok · 2 running · 1 skipped · 4 pending`: a plan's tasks by state."""
    from collections import Counter

    found = Counter(str(r.status) for r in results)
    order = [s for s in STATUS_STYLE if found[s]]
    return " · ".join(f"{found[s]} {s}" for s in order)


def counts(run: Run) -> tuple[int, int, int]:
    """Final, failed and running tasks: the run's own counts while it schedules (a batch
    has an event per task change, and counting every result on each was O(n²)); counted
    from the results before it does."""
    if run.scheduler is not None:
        return run.finals, run.failures, run.scheduler.figures.running
    results = run.result.results
    done = sum(1 for r in results if r.final)
    failed = sum(1 for r in results if r.final and r.status != "ok")
    running = sum(1 for r in results if r.status in ("starting", "running", "retrying"))
    return done, failed, running


def progress_line(run: Run, elapsed: float) -> str:
    """done / running / waiting / failed / retried, rate, ETA, tokens, cost, processes."""
    total = len(run.result.results)
    done, failed, running = counts(run)
    waiting = total - done - running
    retried = run.scheduler.figures.retried if run.scheduler is not None else 0
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f"{(total - done) / rate:.0f}s" if rate > 0 and done < total else "-"
    processes = 0
    if run.executor is not None:
        processes = run.executor.process_count()
    cost = format_costs(run.spent_cost or None, unpriced(run.result.results))
    return (
        f"{done}/{total} done · {running} running · {waiting} waiting · {failed} failed · "
        f"{retried} retried · {rate:.1f} tasks/s · ETA {eta} · "
        f"{run.shown_tokens:,} tokens · {cost} · {processes} processes"
    )


class StatusLines:
    """Plain status lines on stderr when it is not a terminal (logs, scripts)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.run: Run | None = None
        self.begun = time.monotonic()
        self.next_share = PLAIN_PROGRESS_STEP

    def watch(self, run: Run) -> None:
        self.run = run

    def status(self, result: AgentResult) -> None:
        run = self.run
        if run is not None and len(run.result.results) > TABLE_MAX_ROWS:
            self._batch(run)
            return
        who = result.agent_id
        if run is not None and run.result.mode == "plan":
            who = f"{result.id} ({result.agent_id})"
        if result.status in ("failed", "skipped"):
            self._print(f"aiswitch: {who}: {shown(result.error or '')}")
        else:
            self._print(f"aiswitch: {who} {result.status}")

    def _batch(self, run: Run) -> None:
        total = len(run.result.results)
        done = counts(run)[0]
        if done / total + 1e-9 >= self.next_share:
            while self.next_share <= done / total + 1e-9:
                self.next_share += PLAIN_PROGRESS_STEP
            self._print("aiswitch: " + progress_line(run, time.monotonic() - self.begun))

    def _print(self, line: str) -> None:
        self.console.print(line, highlight=False, markup=False)
