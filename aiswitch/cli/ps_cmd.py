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
        sys.stderr.write("no agent process is running\n")
        return
    from rich.console import Console
    from rich.table import Table

    from aiswitch.cli.runs_cmd import LIST_PIPED_WIDTH, format_duration

    table = Table(box=None, pad_edge=False)
    names = (
        "agent", "run", "preset", "pid", "state", "uptime", "restarts", "done/in flight",
        "tokens", "cpu%", "rss",
    )  # fmt: skip
    for name in names:
        numeric = name in ("pid", "restarts", "tokens", "cpu%", "rss")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:

        def shown(value: Any, fmt: str = "{}") -> str:
            return "-" if value is None else fmt.format(value)

        table.add_row(
            str(row["agent_id"]),
            str(row["run_id"]),
            shown(row.get("preset")),
            shown(row.get("pid")),
            shown(row.get("state")),
            format_duration(row["uptime_s"]) if row.get("uptime_s") is not None else "-",
            shown(row.get("restarts")),
            f"{shown(row.get('tasks_done'))}/{shown(row.get('in_flight'))}",
            shown(row.get("tokens"), "{:,}"),
            shown(row.get("cpu_percent"), "{:.1f}"),
            shown(row["rss"] / 2**20 if row.get("rss") is not None else None, "{:.0f}M"),
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=LIST_PIPED_WIDTH)
    console.print(table, highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("ps")(ps)
