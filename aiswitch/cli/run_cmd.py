"""`aiswitch run`: one task over one or more agents, parallel or sequential."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import typer

from aiswitch.cli import exitcodes
from aiswitch.errors import UsageError


def read_task(task: str) -> str:
    if task == "-":
        data = sys.stdin.read()
        if not data.strip():
            raise UsageError("the task read from stdin is empty")
        return data
    return task


def run(
    task: str = typer.Argument(..., help="The task, or - to read it from stdin."),
    agent: str | None = typer.Option(None, "--agent", "-a", help="One agent: NAME[@PRESET]."),
    parallel: str | None = typer.Option(
        None, "--parallel", "-p", help="Agents given the same task at once: A,B[@PRESET],…"
    ),
    sequential: str | None = typer.Option(
        None, "--sequential", "-s", help="Agents run in turn, each given the previous output."
    ),
    timeout: float | None = typer.Option(None, "--timeout", "-t", help="Seconds per task."),
    cwd: Path | None = typer.Option(None, "--cwd", help="Working directory for the agents."),
    handoff: str | None = typer.Option(
        None,
        "--handoff-template",
        help="Sequential prompt template: {task}, {previous_output}, {previous_agent}.",
    ),
    budget_usd: float | None = typer.Option(
        None, "--budget-usd", help="Stop the run when its cost reaches this many USD."
    ),
    budget_tokens: int | None = typer.Option(
        None, "--budget-tokens", help="Stop the run when it has spent this many tokens."
    ),
    permissions: str | None = typer.Option(
        None,
        "--permissions",
        help="What agents may do: read-only, edit or full (default: each adapter's, "
        "see docs/agents.md).",
    ),
    resume: str | None = typer.Option(
        None,
        "--resume",
        help="Continue this session of the agent (its session_id from an earlier run).",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON document (docs/run-json.md)."
    ),
) -> None:
    """Run a task on agents (child processes) and show their results side by side."""
    from aiswitch.coordinator.run import DEFAULT_HANDOFF_TEMPLATE, RunRequest
    from aiswitch.coordinator.specs import parse_specs

    chosen = [
        (n, v)
        for n, v in (("--agent", agent), ("--parallel", parallel), ("--sequential", sequential))
        if v
    ]
    if len(chosen) != 1:
        raise UsageError("give exactly one of --agent, --parallel or --sequential")
    flag, value = chosen[0]
    specs = parse_specs(value)
    if flag == "--agent" and len(specs) != 1:
        raise UsageError("--agent takes one agent; use --parallel or --sequential for several")
    if permissions not in (None, "read-only", "edit", "full"):
        raise UsageError(
            f"unknown --permissions {permissions!r}", hint="use read-only, edit or full"
        )
    request = RunRequest(
        mode="sequential" if flag == "--sequential" else "parallel",
        specs=specs,
        prompt=read_task(task),
        timeout_s=timeout,
        cwd=str(cwd) if cwd else None,
        handoff_template=handoff or DEFAULT_HANDOFF_TEMPLATE,
        budget_usd=budget_usd,
        budget_tokens=budget_tokens,
        permissions=permissions,  # type: ignore[arg-type]
        session_id=resume,
    )
    code = asyncio.run(_run(request, as_json))
    raise typer.Exit(code)


async def _run(request: Any, as_json: bool) -> int:
    from rich.console import Console

    from aiswitch.cli.live import LiveView, render_results
    from aiswitch.coordinator.run import Coordinator, RunEvent

    err = Console(stderr=True)
    live: LiveView | None = None

    interactive = err.is_terminal and not as_json

    def on_event(event: RunEvent) -> None:
        if live is not None:
            live.event(event.kind, event.result, event.text)
        if event.kind != "status" or as_json:
            return
        result = event.result
        if interactive:
            return  # the live table and the result panels say it all
        if result.status == "failed":
            err.print(f"aiswitch: {result.agent_id}: {result.error}", highlight=False)
        else:
            # Plain status lines for logs and scripts (the live table needs a terminal).
            err.print(f"aiswitch: {result.agent_id} {result.status}", highlight=False)

    from aiswitch import logs
    from aiswitch.home import Home
    from aiswitch.tokens.quotas import make_quota_check

    home = Home.current().ensure()
    logs.configure(home)
    coordinator = Coordinator(
        home,
        on_event=on_event,
        check_quota=make_quota_check(home),
    )
    slots = coordinator.plan(request)
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main is not None:
        loop.add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        if interactive:
            live = LiveView(err, [s.result for s in slots])
            with live:
                run = await coordinator.run(request, slots)
        else:
            run = await coordinator.run(request, slots)
    except asyncio.CancelledError:
        recorded = coordinator.run_result
        if recorded is None:
            return exitcodes.CANCELLED
        run = recorded
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    for warning in coordinator.store.warnings:
        err.print(f"aiswitch: warning: {warning}", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(run.json_document(), ensure_ascii=False) + "\n")
    else:
        render_results(Console(), run)
    return exitcodes.RUN_STATUS.get(run.status, exitcodes.FAILED)


def register(app: typer.Typer) -> None:
    app.command("run")(run)
