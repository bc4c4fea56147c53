"""`aiswitch metrics [--run RUN] [--json]`: how runs went, from `state/metrics.json`."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _money(cost: float, unpriced: int) -> str:
    from aiswitch.tokens.money import format_usd

    if unpriced and not cost:
        return "unpriced"
    return format_usd(cost) + (f" (+{unpriced} unpriced)" if unpriced else "")


def summary_lines(summary: dict[str, Any]) -> list[str]:
    rate = summary["success_rate"]
    ops_s = summary["operations_per_s"]
    return [
        f"{summary['runs']} run{'s' if summary['runs'] != 1 else ''} · "
        f"{summary['operations']:,} operations · "
        f"{'-' if rate is None else f'{100 * rate:.1f}%'} ok · "
        f"avg {_seconds(summary['avg_response_s'])} · p95 {_seconds(summary['p95_response_s'])}"
        f" · peak {summary['peak_concurrency']} in flight · "
        f"{'-' if ops_s is None else f'{ops_s:.2f}'} ops/s",
        f"{summary['tokens']:,} tokens · {_money(summary['cost_usd'], summary['unpriced'])}",
    ]


def metrics(
    run: str | None = typer.Option(None, "--run", help="One run's figures, by agent process."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Total operations, success rate, average and p95 response time, peak concurrency,
    operations per second; with --run, per agent process too."""
    from aiswitch.coordinator.metrics import read, report
    from aiswitch.errors import UsageError
    from aiswitch.home import Home
    from aiswitch.state.runs import check_run_id
    from aiswitch.state.store import StateStore

    entries = read(StateStore(Home.current()))
    if run is not None:
        check_run_id(run)
        entries = [e for e in entries if e.get("run_id") == run]
        if not entries:
            raise UsageError(
                f"no metrics of run {run}",
                hint="`aiswitch metrics` lists what is recorded; runs before metrics have none",
            )
    summary = report(entries)
    if as_json:
        doc = {"summary": summary, "runs": entries}
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
        return
    if not entries:
        from aiswitch.cli.verbosity import note

        note("no run has metrics yet")
        return
    for line in summary_lines(summary):
        sys.stdout.write(line + "\n")
    if run is None:
        return
    from rich.console import Console
    from rich.table import Table

    from aiswitch.cli.runs_cmd import LIST_PIPED_WIDTH

    table = Table(box=None, pad_edge=False)
    names = ("agent", "preset", "tasks", "errors", "p50", "p95", "tokens", "cost", "cpu", "rss")
    for name in names:
        table.add_column(name, justify="left" if name in ("agent", "preset") else "right")
    for agent_id, a in entries[0].get("agents", {}).items():
        rss = a.get("rss_peak")
        table.add_row(
            agent_id,
            a.get("preset") or "-",
            str(a.get("tasks", 0)),
            str(a.get("errors", 0)),
            _seconds(a.get("p50_response_s")),
            _seconds(a.get("p95_response_s")),
            f"{a.get('tokens', 0):,}",
            _money(a.get("cost_usd") or 0.0, a.get("unpriced") or 0),
            f"{a.get('cpu_s', 0):.2f}s",
            "-" if rss is None else f"{rss / 2**20:.0f}M",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=LIST_PIPED_WIDTH)
    console.print(table, highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("metrics")(metrics)
