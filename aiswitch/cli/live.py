"""What `aiswitch run` shows a person: a live view while agents work, then results.

The live view goes to stderr, and only when stderr is a terminal, so stdout carries the
results alone (exactly one JSON document with --json). A few tasks get a table, one row
each; a batch gets progress figures (done, running, waiting, failed, retried, tasks/s, ETA,
tokens and cost so far, pool sizes). A plan's view adds its tasks by state and the running
ones with their agent and last line. Without a terminal, `StatusLines` prints plain lines:
one per task change for a few tasks, one per tenth of a batch.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiswitch.cli.terminal import safe_text, shown
from aiswitch.coordinator.results import AgentResult, RunResult

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
# Up to this many tasks get a row each; more are a batch, shown as figures.
TABLE_MAX_ROWS = 12
# Without a terminal, a batch prints a line each time this share of it is done.
PLAIN_PROGRESS_STEP = 0.1
# A big plan's view lists at most this many of its running tasks.
PLAN_RUNNING_ROWS = 8


def format_tokens(result: AgentResult) -> str:
    u = result.usage
    return f"{u.input_tokens:,} in · {u.output_tokens:,} out" + (
        f" · {u.cache_read_tokens:,} cached" if u.cache_read_tokens else ""
    )


def format_changes(result: AgentResult) -> str:
    """`2 files +10 -3` (and the check's verdict) once the task's changes are known."""
    ws = result.workspace
    if ws is None or ws.changes is None:
        return "-"
    c = ws.changes
    text = f"{c.files} file{'s' if c.files != 1 else ''} +{c.insertions} -{c.deletions}"
    if ws.check is not None:
        text += " · check " + ("passed" if ws.check.passed else "failed")
    return text


def format_cost(cost: float | None) -> str:
    from aiswitch.tokens.money import format_usd

    return "unpriced" if cost is None else format_usd(cost)


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
        if text:
            last = text.splitlines()[-1] if text.strip() else ""
            self.last_line[key] = shown(last)

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
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, expand=False)
        plan = self.run.result.mode == "plan"
        columns = ("agent", "preset", "status", "elapsed", "tokens", "changes", "last output")
        for column in ("task", *columns) if plan else columns:
            table.add_column(column, no_wrap=True)
        now = time.monotonic()
        for result in self.results:
            mark, style = STATUS_STYLE.get(result.status, ("?", ""))
            start = self.started.get(result.task_id)
            end = self.ended.get(result.task_id, now)
            elapsed = f"{end - start:5.1f}s" if start else "  -  "
            line = self.last_line.get(result.task_id, "")
            if len(line) > LAST_LINE_CHARS:
                line = line[: LAST_LINE_CHARS - 1] + "…"
            first = (Text(result.id or ""),) if plan else ()
            table.add_row(
                *first,
                result.agent_id,
                result.preset or "-",
                f"[{style}]{mark} {result.status}[/]",
                elapsed,
                format_tokens(result),
                format_changes(result),
                Text(line),  # an agent's text is data, never markup
            )
        return table


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
    cost = "unpriced" if not run.spent_cost else format_cost(run.spent_cost)
    return (
        f"{done}/{total} done · {running} running · {waiting} waiting · {failed} failed · "
        f"{retried} retried · {rate:.1f} tasks/s · ETA {eta} · "
        f"{run.spent_tokens:,} tokens · {cost} · {processes} processes"
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


def render_results(console: Console, run: RunResult) -> None:
    """Each agent's result in a panel (side by side when they fit), then totals; a batch
    gets one line per task instead."""
    if len(run.results) > TABLE_MAX_ROWS:
        render_batch(console, run)
        return
    from rich.columns import Columns
    from rich.panel import Panel
    from rich.text import Text

    panels = []
    for result in run.results:
        mark, style = STATUS_STYLE.get(result.status, ("?", ""))
        title = f"{result.agent_id}" + (f" @{result.preset}" if result.preset else "")
        if run.mode == "plan":
            # A plan runs many tasks on one agent: its panels are named by task.
            title = f"{result.id} · {title}"
        body = Text(safe_text(result.output.rstrip()) or "(no output)")
        if result.error:
            body.append(f"\n{shown(result.error)}", style="red")
        subtitle = f"{mark} {result.status} · {result.duration_s:.1f}s · {format_tokens(result)}"
        ws = result.workspace
        if ws is not None and ws.changes is not None:
            subtitle += f" · {format_changes(result)}"
            if ws.branch:
                body.append(f"\n{ws.branch}", style="dim")
        panels.append(
            Panel(
                body,
                title=title,
                title_align="left",
                subtitle=subtitle,
                subtitle_align="left",
                border_style=style,
            )
        )
    width = console.width // max(1, len(panels)) - 1
    if len(panels) > 1 and width >= 40:
        console.print(Columns(panels, width=width, equal=True))
    else:
        for panel in panels:
            console.print(panel)
    render_totals(console, run)


def render_batch(console: Console, run: RunResult) -> None:
    from rich.markup import escape

    for result in run.results:
        mark, style = STATUS_STYLE.get(result.status, ("?", ""))
        what = result.error if result.error else result.output.strip().splitlines()[:1]
        text = what if isinstance(what, str) else (what[0] if what else "")
        # Agents' text is data, never markup: "[mock.p1] …" must print as it is.
        console.print(
            f"[{style}]{mark}[/] {escape(str(result.id or result.task_id))} "
            f"{escape(result.agent_id)} {result.status} · {escape(shown(text[:LAST_LINE_CHARS]))}",
            highlight=False,
        )
    render_totals(console, run)


def render_totals(console: Console, run: RunResult) -> None:
    u = run.usage
    f = run.figures
    console.print(
        f"{f.succeeded}/{len(run.results)} ok · {f.retried} retried · "
        f"p95 {f.p95_response_s or 0:.2f}s · peak {f.peak_concurrency} in flight",
        highlight=False,
    )
    console.print(
        f"run {run.run_id} [bold]{run.status}[/] · {run.mode} · "
        f"{u.total_tokens:,} tokens ({u.input_tokens:,} in, {u.output_tokens:,} out, "
        f"{u.cache_read_tokens:,} cache read, {u.cache_write_tokens:,} cache write) · "
        f"{format_cost(run.cost_usd)}",
        highlight=False,
    )
