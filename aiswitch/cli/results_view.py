"""What `aiswitch run` (and `runs show`) prints when a run has ended: each task's result
in a panel, or one line per task for a batch, then the run's totals.

Panels never lose content: a long unbroken word is folded onto the next line, not cut with
"…"; the footer under each panel is short (status and time: it always fits), and the
usage line (input, output, cache read, cache write tokens, cost) is the panel's last line,
wrapped like the rest. Totals say `+N unpriced` when some tasks had usage but no price
rather than a total that looks complete. When stdout is not a terminal the run lines are
printed whole (no wrapping at 80 columns): a script or a log gets one line each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiswitch.cli.terminal import safe_text, shown

if TYPE_CHECKING:
    from rich.console import Console

    from aiswitch.coordinator.results import AgentResult, RunResult

# Panels side by side only when each gets at least this many columns.
PANEL_MIN_WIDTH = 40
# A batch's line per task shows this much of its output's last line (or its error).
BATCH_LINE_CHARS = 60


def format_tokens(result: AgentResult) -> str:
    """`100 in · 7 out` (then cache read, cache write when there are any): the usage live
    views show (`shown_usage`, which is `usage` once the task has ended)."""
    u = result.shown_usage
    text = f"{u.input_tokens:,} in · {u.output_tokens:,} out"
    if u.cache_read_tokens:
        text += f" · {u.cache_read_tokens:,} cache read"
    if u.cache_write_tokens:
        text += f" · {u.cache_write_tokens:,} cache write"
    return text


def format_cost(cost: float | None) -> str:
    from aiswitch.tokens.money import format_usd

    return "unpriced" if cost is None else format_usd(cost)


def format_costs(cost: float | None, unpriced: int) -> str:
    """A total over tasks some of which had no price: `$0.0008 (+2 unpriced)`."""
    if cost is None or (not cost and unpriced):
        return "unpriced"
    return format_cost(cost) + (f" (+{unpriced} unpriced)" if unpriced else "")


def unpriced(results: list[AgentResult]) -> int:
    """Tasks that used tokens but have no price."""
    return sum(1 for r in results if r.cost_usd is None and r.usage.total_tokens)


def last_line(text: str) -> str:
    """The last non-empty line of `text`, stripped and safe for a terminal."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return shown(line.strip())
    return ""


def outcome_line(result: AgentResult) -> str:
    """A finished task in one line: its error when it did not end ok (on one line), else
    its output's last non-empty line."""
    if result.status != "ok" and result.error:
        return shown(" ".join(result.error.split()))
    return last_line(result.output)


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


def render_results(console: Console, run: RunResult, *, batch_above: int = 12) -> None:
    """Each task's result in a panel (side by side when they fit), then totals; more
    than `batch_above` tasks get one line each instead."""
    if len(run.results) > batch_above:
        render_batch(console, run)
        return
    from rich.columns import Columns
    from rich.panel import Panel
    from rich.text import Text

    from aiswitch.cli.live import STATUS_STYLE

    panels = []
    for result in run.results:
        mark, style = STATUS_STYLE.get(result.status, ("?", ""))
        title = f"{result.agent_id}" + (f" @{result.preset}" if result.preset else "")
        if run.mode == "plan":
            # A plan runs many tasks on one agent: its panels are named by task.
            title = f"{result.id} · {title}"
        body = Text(safe_text(result.output.rstrip()) or "(no output)", overflow="fold")
        if result.error:
            body.append(f"\n{shown(result.error)}", style="red")
        ws = result.workspace
        if ws is not None and ws.changes is not None:
            body.append(f"\n{format_changes(result)}", style="dim")
            if ws.branch:
                body.append(f"\n{ws.branch}", style="dim")
        body.append(f"\n{format_tokens(result)} · {format_cost(result.cost_usd)}", style="dim")
        panels.append(
            Panel(
                body,
                title=Text(title, overflow="ellipsis"),
                title_align="left",
                subtitle=f"{mark} {result.status} · {result.duration_s:.1f}s",
                subtitle_align="left",
                border_style=style,
            )
        )
    width = console.width // max(1, len(panels)) - 1
    if len(panels) > 1 and width >= PANEL_MIN_WIDTH:
        console.print(Columns(panels, width=width, equal=True))
    else:
        for panel in panels:
            console.print(panel)
    render_totals(console, run)


def render_batch(console: Console, run: RunResult) -> None:
    from rich.text import Text

    from aiswitch.cli.live import STATUS_STYLE

    for result in run.results:
        mark, style = STATUS_STYLE.get(result.status, ("?", ""))
        line = outcome_line(result)
        if len(line) > BATCH_LINE_CHARS:
            line = line[: BATCH_LINE_CHARS - 1] + "…"
        # Agents' text is data, never markup: "[mock.p1] …" must print as it is.
        text = Text(f"{mark}", style=style)
        text.append(f" {result.id or result.task_id} {result.agent_id} {result.status} · {line}")
        console.print(text, highlight=False, soft_wrap=not console.is_terminal)
    render_totals(console, run)


def render_totals(console: Console, run: RunResult) -> None:
    u = run.usage
    f = run.figures
    whole = not console.is_terminal  # piped: one line each, as long as it is
    console.print(
        f"{f.succeeded}/{len(run.results)} ok · {f.retried} retried · "
        f"p95 {f.p95_response_s or 0:.2f}s · peak {f.peak_concurrency} in flight",
        highlight=False,
        soft_wrap=whole,
    )
    console.print(
        f"run {run.run_id} [bold]{run.status}[/] · {run.mode} · "
        f"{u.total_tokens:,} tokens ({u.input_tokens:,} in, {u.output_tokens:,} out, "
        f"{u.cache_read_tokens:,} cache read, {u.cache_write_tokens:,} cache write) · "
        f"{format_costs(run.cost_usd, unpriced(run.results))}",
        highlight=False,
        soft_wrap=whole,
    )
