"""What `aiswitch run` shows a person: a live table while agents work, then results.

The live table goes to stderr, and only when stderr is a terminal, so stdout carries
the results alone (and exactly one JSON document with --json).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiswitch.coordinator.results import AgentResult, RunResult

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

STATUS_STYLE = {
    "pending": ("·", "dim"),
    "starting": ("…", "yellow"),
    "running": ("▶", "cyan"),
    "ok": ("✓", "green"),
    "failed": ("✗", "red"),
    "timeout": ("⏱", "red"),
    "cancelled": ("■", "magenta"),
}
# Live refresh rate: smooth elapsed-time counters without burning a core.
REFRESH_PER_SECOND = 8
LAST_LINE_CHARS = 60


def format_tokens(result: AgentResult) -> str:
    u = result.usage
    return f"{u.input_tokens:,} in · {u.output_tokens:,} out" + (
        f" · {u.cache_read_tokens:,} cached" if u.cache_read_tokens else ""
    )


def format_cost(cost: float | None) -> str:
    return "unpriced" if cost is None else f"${cost:.4f}"


class LiveView:
    """A rich Live table, one row per agent, fed by coordinator events."""

    def __init__(self, console: Console, results: list[AgentResult]) -> None:
        from rich.live import Live

        self.console = console
        self.results = results
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
        if result.status == "starting":
            self.started.setdefault(result.agent_id, now)
        if result.status in ("ok", "failed", "timeout", "cancelled"):
            self.ended.setdefault(result.agent_id, now)
        if text:
            self.last_line[result.agent_id] = text.splitlines()[-1] if text.strip() else ""

    def render(self) -> RenderableType:
        from rich.table import Table

        table = Table(box=None, pad_edge=False, expand=False)
        for column in ("agent", "preset", "status", "elapsed", "tokens", "last output"):
            table.add_column(column, no_wrap=True)
        now = time.monotonic()
        for result in self.results:
            mark, style = STATUS_STYLE.get(result.status, ("?", ""))
            start = self.started.get(result.agent_id)
            end = self.ended.get(result.agent_id, now)
            elapsed = f"{end - start:5.1f}s" if start else "  -  "
            line = self.last_line.get(result.agent_id, "")
            if len(line) > LAST_LINE_CHARS:
                line = line[: LAST_LINE_CHARS - 1] + "…"
            table.add_row(
                result.agent_id,
                result.preset or "-",
                f"[{style}]{mark} {result.status}[/]",
                elapsed,
                format_tokens(result),
                line,
            )
        return table


def render_results(console: Console, run: RunResult) -> None:
    """Each agent's result in a panel (side by side when they fit), then totals."""
    from rich.columns import Columns
    from rich.panel import Panel
    from rich.text import Text

    panels = []
    for result in run.results:
        mark, style = STATUS_STYLE.get(result.status, ("?", ""))
        title = f"{result.agent_id}" + (f" @{result.preset}" if result.preset else "")
        body = Text(result.output.rstrip() or "(no output)")
        if result.error:
            body.append(f"\n{result.error}", style="red")
        subtitle = f"{mark} {result.status} · {result.duration_s:.1f}s · {format_tokens(result)}"
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
    u = run.usage
    console.print(
        f"run {run.run_id} [bold]{run.status}[/] · {run.mode} · "
        f"{u.total_tokens:,} tokens ({u.input_tokens:,} in, {u.output_tokens:,} out, "
        f"{u.cache_read_tokens:,} cache read, {u.cache_write_tokens:,} cache write) · "
        f"{format_cost(run.cost_usd)}",
        highlight=False,
    )
