"""`aiswitch ps`: every live agent process of every run on this machine.

What is in `state/agents.json` and still alive (pid and create time: a recycled pid is
never taken for an agent), with what the machine says of it (CPU %, RSS, uptime, via
psutil) and what its run says of it over the run's control socket (state, restarts,
tasks done and in flight, tokens). A run that does not answer within `STATUS_TIMEOUT_S`
shows `-` for those: the process is still listed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import typer

from aiswitch.cli.columns import Fit

# `run.status` is answered inline by the run's event loop; a run this slow to answer is
# busy or stuck, and ps must not wait on it.
STATUS_TIMEOUT_S = 2.0


def collect(store: Any) -> list[dict[str, Any]]:
    """One row per live agent process, its run's figures merged in."""
    from aiswitch.errors import AiswitchError
    from aiswitch.rpc.errors import RpcError
    from aiswitch.state.processes import ProcessTable

    rows = ProcessTable(store).live()
    for row in rows:
        row["run_id"], _, row["agent_id"] = str(row["key"]).rpartition("/")

    async def statuses() -> dict[str, dict[str, Any]]:
        from aiswitch.cli.control import control_call

        async def one(run_id: str) -> tuple[str, dict[str, Any]]:
            try:
                status = await control_call(store, run_id, "run.status", timeout=STATUS_TIMEOUT_S)
            except (AiswitchError, RpcError, OSError):
                return run_id, {}
            found = {p.get("agent_id"): p for p in status.get("processes", [])}
            return run_id, found

        done = await asyncio.gather(*(one(r) for r in sorted({r["run_id"] for r in rows})))
        return dict(done)

    by_run = asyncio.run(statuses()) if rows else {}
    for row in rows:
        live = by_run.get(row["run_id"], {}).get(row["agent_id"], {})
        for name in ("state", "restarts", "tasks_done", "in_flight", "tokens"):
            row[name] = live.get(name, row.get(name))
    return rows


def ps(
    as_json: bool = typer.Option(False, "--json", help="Print the processes as JSON."),
) -> None:
    """Every live agent process of every run: id, run, preset, pid, state, uptime,
    restarts, tasks done / in flight, tokens, CPU %, RSS."""
    from aiswitch.home import Home
    from aiswitch.state.store import StateStore

    rows = collect(StateStore(Home.current()))
    if as_json:
        keys = (
            "agent_id", "run_id", "agent", "preset", "pid", "state", "uptime_s", "restarts",
            "tasks_done", "in_flight", "tokens", "cpu_percent", "rss",
        )  # fmt: skip
        out = [{k: row.get(k) for k in keys} for row in rows]
        sys.stdout.write(json.dumps({"processes": out}, ensure_ascii=False) + "\n")
        return
    if not rows:
        from aiswitch.cli.verbosity import note

        note("no agent process is running")
        return
    from rich.console import Console

    from aiswitch.cli.runs_cmd import LIST_PIPED_WIDTH

    console = Console()
    if not console.is_terminal:
        console = Console(width=LIST_PIPED_WIDTH)
    console.print(table(rows, console.width), highlight=False, markup=False)


COLUMNS = (
    "agent", "run", "preset", "pid", "state", "uptime", "restarts", "done/in flight",
    "tokens", "cpu%", "rss",
)  # fmt: skip
# On a narrow terminal (aiswitch.cli.columns) the run id shrinks first, keeping its end (its
# time and random part), then restarts, pid, uptime, preset, RSS and CPU % are left out in
# that order; agent, state, tasks done / in flight and tokens always stay.
PS_FIT = Fit(
    give_way=("restarts", "pid", "uptime", "preset", "rss", "cpu%"),
    shrink="run",
    shrink_min=12,
    cut="start",
    right=frozenset(("pid", "restarts", "tokens", "cpu%", "rss")),
)


def _shown(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def _rss(value: Any) -> str:
    return _shown(value / 2**20 if value is not None else None, "{:.0f}M")


def table(rows: list[dict[str, Any]], room: int, totals: bool = False) -> Any:
    """The rows of `collect` as a rich table `room` cells wide at most (`ps`, and each
    frame of `top`), with a last line of totals (processes, tasks, tokens, CPU, RSS) when
    `totals`."""
    from aiswitch.cli.columns import fitted_table
    from aiswitch.cli.runs_cmd import format_duration

    cells = [
        {
            "agent": str(row["agent_id"]),
            "run": str(row["run_id"]),
            "preset": _shown(row.get("preset")),
            "pid": _shown(row.get("pid")),
            "state": _shown(row.get("state")),
            "uptime": (
                format_duration(row["uptime_s"]) if row.get("uptime_s") is not None else "-"
            ),
            "restarts": _shown(row.get("restarts")),
            "done/in flight": f"{_shown(row.get('tasks_done'))}/{_shown(row.get('in_flight'))}",
            "tokens": _shown(row.get("tokens"), "{:,}"),
            "cpu%": _shown(row.get("cpu_percent"), "{:.1f}"),
            "rss": _rss(row.get("rss")),
        }
        for row in rows
    ]
    footer = None
    if totals:
        sums = summed(rows)
        footer = {
            "agent": f"{len(rows)} process{'es' if len(rows) != 1 else ''}",
            "run": f"{sums['runs']} run{'s' if sums['runs'] != 1 else ''}",
            "done/in flight": f"{sums['tasks_done']}/{sums['in_flight']}",
            "tokens": f"{sums['tokens']:,}",
            "cpu%": f"{sums['cpu_percent']:.1f}",
            "rss": _rss(sums["rss"]),
        }
    return fitted_table(COLUMNS, cells, room, PS_FIT, footer=footer)


def summed(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The totals of `collect`'s rows: runs, tasks done and in flight, tokens, CPU %, RSS
    (a figure a row lacks counts 0)."""
    out: dict[str, Any] = {"processes": len(rows), "runs": len({r["run_id"] for r in rows})}
    for name in ("tasks_done", "in_flight", "tokens", "cpu_percent", "rss"):
        out[name] = sum(r.get(name) or 0 for r in rows)
    out["cpu_percent"] = round(out["cpu_percent"], 1)
    return out


def register(app: typer.Typer) -> None:
    app.command("ps")(ps)
