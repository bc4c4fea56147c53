"""`aiswitch agents list`: the agents defined (built-in and config/agents.yaml), their
kind and whether they can start here (else the one line saying what to install).

`aiswitch agents stop|restart|switch AGENT_ID`: one agent process of a running run,
from another terminal, through the run's control socket (aiswitch.cli.control).

AGENT_ID is a process's id (`mock.p1`, `claude@kimi.p2`), as `runs watch` and
`state/agents.json` show it; the run is found from `agents.json` (`--run` picks one when
several runs have a process of that id).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import typer

from aiswitch.cli import completion
from aiswitch.errors import UsageError

agents_app = typer.Typer(
    help="The agents defined, and agent processes of running runs.", no_args_is_help=True
)

_RUN = typer.Option(
    None,
    "--run",
    help="The run the process belongs to (when several have it).",
    autocompletion=completion.run_ids,
)


def _run_of(store: Any, agent_id: str, run_id: str | None) -> str:
    from aiswitch.state.processes import ProcessTable

    if run_id is not None:
        return run_id
    runs = sorted(
        {
            key.rsplit("/", 1)[0]
            for key in ProcessTable(store).entries()
            if "/" in key and key.rsplit("/", 1)[1] == agent_id
        }
    )
    if not runs:
        raise UsageError(
            f"no live agent process {agent_id!r}",
            hint="`aiswitch runs watch RUN` lists a run's processes",
        )
    if len(runs) > 1:
        raise UsageError(
            f"{len(runs)} runs have a process {agent_id!r}: {', '.join(runs)}",
            hint="pick one with --run RUN",
        )
    return runs[0]


def _call(agent_id: str, run_id: str | None, method: str, **params: str) -> None:
    from aiswitch.cli.control import control_call
    from aiswitch.home import Home
    from aiswitch.state.store import StateStore

    store = StateStore(Home.current())
    run = _run_of(store, agent_id, run_id)
    result = asyncio.run(control_call(store, run, method, {"agent_id": agent_id, **params}))
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")


@agents_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the agents defined: built-in and config/agents.yaml, available or not."""
    from aiswitch.agents import AgentRegistry
    from aiswitch.errors import AgentUnavailableError

    rows = []
    for name, agent in sorted(AgentRegistry.load().agents.items()):
        try:
            agent.check_available()
            missing = None
        except AgentUnavailableError as exc:
            missing = exc.one_line()
        command = agent.acp_command if agent.kind == "acp" else agent.command
        rows.append(
            {
                "name": name,
                "kind": agent.kind,
                "command": command,
                "available": missing is None,
                "unavailable": missing,
                "description": agent.description,
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return
    for row in rows:
        state = "ready" if row["available"] else "missing"
        line = f"{row['name']:<14} {row['kind']:<8} {state:<8} {row['description']}"
        sys.stdout.write(line.rstrip() + "\n")
        if row["unavailable"]:
            sys.stdout.write(f"{'':<14} {row['unavailable']}\n")


@agents_app.command("stop")
def stop(
    agent_id: str = typer.Argument(
        ..., help="The process (e.g. mock.p1).", autocompletion=completion.agent_ids
    ),
    run: str | None = _RUN,
) -> None:
    """Stop one agent process; its tasks in flight are retried on another."""
    _call(agent_id, run, "agent.stop")


@agents_app.command("restart")
def restart(
    agent_id: str = typer.Argument(
        ..., help="The process (e.g. mock.p1).", autocompletion=completion.agent_ids
    ),
    run: str | None = _RUN,
) -> None:
    """Stop one agent process and start it again; its tasks in flight are retried."""
    _call(agent_id, run, "agent.restart")


@agents_app.command("switch")
def switch(
    agent_id: str = typer.Argument(
        ..., help="The process (e.g. mock.p1).", autocompletion=completion.agent_ids
    ),
    preset: str = typer.Argument(
        ...,
        help="The preset it uses from its next task on.",
        autocompletion=completion.preset_names,
    ),
    run: str | None = _RUN,
) -> None:
    """Give a live agent process another preset (env.switch), from its next task on."""
    _call(agent_id, run, "agent.switch", preset=preset)


def register(app: typer.Typer) -> None:
    app.add_typer(agents_app, name="agents")
