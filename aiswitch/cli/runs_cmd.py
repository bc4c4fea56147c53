"""`aiswitch runs`: runs recorded under the home.

- `runs list` shows the index, newest first; `runs show RUN` prints a run's results again,
  as `aiswitch run` printed them (`--json`: the very document `run --json` printed).
- `runs rerun RUN [--failed]` runs the same request again under a new run id (`--failed`:
  the tasks that did not end ok; those that did are kept).
- `runs rm RUN` forgets a finished run.
- `runs cancel RUN` and `runs watch RUN` reach a running run through its control socket
  (aiswitch.cli.control): cancel returns once the run has ended.
- `runs resume RUN_ID` finishes an interrupted run (its coordinator was killed): the tasks
  that had not finished run again, under the same run id; a task that finished (its result
  is in the run's journal) never runs again.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

import typer

from aiswitch.cli import completion
from aiswitch.errors import UsageError

runs_app = typer.Typer(help="Runs recorded under the aiswitch home.", no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="Print one JSON document (docs/run-json.md).")
_JSONL = typer.Option(
    False, "--jsonl", help="Print one JSON line per task as it ends, then one for the run."
)


# `runs cancel`: the run's own stop takes a few seconds at most (children are stopped
# with their stop sequence); this only bounds a wait for a run that hangs.
CANCEL_WAIT_S = 30.0
# Piped, a line is as long as it needs (up to this): a script reads whole lines.
LIST_PIPED_WIDTH = 400


def _output(as_json: bool, as_jsonl: bool) -> str:
    if as_json and as_jsonl:
        raise UsageError("give --json or --jsonl, not both")
    return "json" if as_json else "jsonl" if as_jsonl else "human"


def _store() -> Any:
    from aiswitch.home import Home
    from aiswitch.state.store import StateStore

    return StateStore(Home.current())


def _run_again(run_id: str, output: Any, start: Callable[[Any, Any], Any]) -> None:
    """Check `run_id`, then present the run `start(coordinator, on_event)` makes; exits."""
    from aiswitch.cli.run_cmd import coordinator_for_cli, present
    from aiswitch.state.runs import check_run_id

    check_run_id(run_id)
    coordinator = coordinator_for_cli()

    async def main() -> int:
        return await present(coordinator, lambda on_event: start(coordinator, on_event), output)

    raise typer.Exit(asyncio.run(main()))


@runs_app.command("resume")
def resume(
    run_id: str = typer.Argument(
        ..., help="The run to finish (its run_id).", autocompletion=completion.run_ids
    ),
    as_json: bool = _JSON,
    as_jsonl: bool = _JSONL,
) -> None:
    """Run an interrupted run's unfinished tasks again (finished ones are kept)."""
    _run_again(
        run_id,
        _output(as_json, as_jsonl),
        lambda coordinator, on_event: coordinator.resume(run_id, on_event=on_event),
    )


@runs_app.command("rerun")
def rerun(
    run_id: str = typer.Argument(
        ..., help="The run to run again (its run_id).", autocompletion=completion.run_ids
    ),
    failed: bool = typer.Option(
        False, "--failed", help="Only the tasks that did not end ok (the others are kept)."
    ),
    as_json: bool = _JSON,
    as_jsonl: bool = _JSONL,
) -> None:
    """Run a past run's request again, under a new run id."""
    _run_again(
        run_id,
        _output(as_json, as_jsonl),
        lambda coordinator, on_event: coordinator.rerun(
            run_id, failed_only=failed, on_event=on_event
        ),
    )


@runs_app.command("list")
def list_(
    status: str | None = typer.Option(None, "--status", help="Only runs of this status."),
    since: str | None = typer.Option(
        None, "--since", help="Runs started on or after this day (YYYY-MM-DD, local time)."
    ),
    limit: int | None = typer.Option(None, "--limit", "-n", help="At most this many runs."),
    as_json: bool = typer.Option(False, "--json", help="Print the index entries as JSON."),
) -> None:
    """Runs, newest first: id, mode, status, agents, tokens, cost, started, duration."""
    from aiswitch.coordinator.history import list_runs
    from aiswitch.tokens.report_options import parse_date

    entries = list_runs(_store(), status=status, since=parse_date(since, "--since"), limit=limit)
    if as_json:
        sys.stdout.write(json.dumps({"runs": entries}, ensure_ascii=False) + "\n")
        return
    if not entries:
        from aiswitch.cli.verbosity import note

        note("no runs yet: `aiswitch run` starts one")
        return
    from rich.console import Console
    from rich.table import Table

    from aiswitch.cli.results_view import format_cost

    table = Table(box=None, pad_edge=False)
    for name in ("run", "mode", "status", "agents", "tokens", "cost", "started", "duration"):
        # Only the agents column gives way on a narrow terminal: a cut run id is useless.
        table.add_column(
            name,
            justify="right" if name in ("tokens", "cost") else "left",
            no_wrap=True,
            overflow="ellipsis" if name == "agents" else "fold",
            min_width={"run": 23, "agents": 6, "status": 9}.get(name),
        )
    for entry in entries:
        started = _time(entry.get("started_at"))
        ended = _time(entry.get("ended_at"))
        agents = entry.get("agents") or []
        table.add_row(
            str(entry.get("run_id")),
            str(entry.get("mode")),
            str(entry.get("status")),
            ",".join(agents) if len(agents) <= 3 else f"{len(agents)} agents",
            f"{int(entry.get('total_tokens') or 0):,}",
            format_cost(entry.get("cost_usd")),
            started.astimezone().strftime("%Y-%m-%d %H:%M") if started else "-",
            format_duration((ended - started).total_seconds()) if started and ended else "-",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=LIST_PIPED_WIDTH)
    console.print(table, highlight=False, markup=False)


@runs_app.command("show")
def show(
    run_id: str = typer.Argument(
        ..., help="The run (its run_id).", autocompletion=completion.run_ids
    ),
    outputs: bool = typer.Option(
        False, "--output", help="Print only the tasks' outputs, in full, as plain text."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="The document `aiswitch run --json` printed (docs/run-json.md)."
    ),
) -> None:
    """A run's results again, as `aiswitch run` printed them."""
    from aiswitch.coordinator.history import finished_run

    if as_json and outputs:
        raise UsageError("give --json or --output, not both")
    run = finished_run(_store(), run_id)
    if as_json:
        sys.stdout.write(json.dumps(run.json_document(), ensure_ascii=False) + "\n")
    elif outputs:
        many = len(run.results) > 1
        for result in run.results:
            if many:
                sys.stdout.write(f"== {result.id or result.agent_id} ({result.status}) ==\n")
            text = result.output if result.output or not result.error else result.error
            sys.stdout.write(text.rstrip("\n") + "\n")
    else:
        from rich.console import Console

        from aiswitch.cli.results_view import render_results

        render_results(Console(), run)
        if run.settings.best_of:
            from aiswitch.cli.workspace_cmd import render_ranking

            render_ranking(Console(), run)


@runs_app.command("rm")
def rm(
    run_id: str = typer.Argument(
        ..., help="The run to forget (its run_id).", autocompletion=completion.run_ids
    ),
) -> None:
    """Forget a finished run: its entry, its file and its journal (not its token usage)."""
    from aiswitch.coordinator.history import remove_run

    remove_run(_store(), run_id)
    from aiswitch.cli.verbosity import note

    note(f"removed run {run_id}")


@runs_app.command("cancel")
def cancel(
    run_id: str = typer.Argument(
        ..., help="The running run (its run_id).", autocompletion=completion.run_ids
    ),
) -> None:
    """Cancel a run from another terminal: its tasks are cancelled, its agents stopped."""
    from aiswitch.cli.control import control_peer
    from aiswitch.coordinator.history import finished_run

    store = _store()

    async def main() -> None:
        from aiswitch.state.audit import audit

        peer = await control_peer(store, run_id)
        try:
            audit("run.cancel", home=store.home, run_id=run_id)
            await peer.request("run.cancel", None, timeout=CANCEL_WAIT_S)
            # The run closes its socket once it has ended and its file is final.
            await asyncio.wait_for(peer.wait_closed(), CANCEL_WAIT_S)
        except TimeoutError:
            raise UsageError(
                f"run {run_id} did not end within {CANCEL_WAIT_S:g}s of being cancelled",
                hint="see it with `aiswitch runs watch " + run_id + "`",
            ) from None
        finally:
            await peer.close()

    asyncio.run(main())
    run = finished_run(store, run_id)
    sys.stderr.write(f"run {run_id} {run.status}\n")


@runs_app.command("watch")
def watch(
    run_id: str = typer.Argument(
        ..., help="The running run (its run_id).", autocompletion=completion.run_ids
    ),
    as_jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object per event."),
) -> None:
    """Stream a running run's events (task status, progress, usage) until it ends."""
    from aiswitch.cli.control import control_peer
    from aiswitch.cli.terminal import shown

    store = _store()

    def emit(event: dict[str, Any]) -> None:
        if as_jsonl:
            line = json.dumps(event, ensure_ascii=False)
        elif event.get("kind") == "run":
            line = f"run {event.get('run_id')} {event.get('status')}"
        else:
            what = event.get("text") or event.get("error") or ""
            tokens = event.get("total_tokens")
            line = " ".join(
                str(part)
                for part in (
                    event.get("id") or event.get("task_id"),
                    event.get("agent_id"),
                    event.get("status"),
                    f"{'~' if event.get('provisional') else ''}{tokens:,} tokens" if tokens else "",
                    shown(str(what)),
                )
                if part != ""
            )
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    async def main() -> str:
        peer = await control_peer(store, run_id)
        ended: dict[str, Any] = {}

        def events(params: Any) -> None:
            for event in params.get("events", []) if isinstance(params, dict) else []:
                emit(event)

        def end(params: Any) -> None:
            if isinstance(params, dict):
                ended.update(params)

        peer.on_notification("run.events", events)
        peer.on_notification("run.ended", end)
        try:
            status = await peer.request("run.watch", None, timeout=CANCEL_WAIT_S)
            emit({"kind": "run", **{k: status[k] for k in ("run_id", "status")}})
            await peer.wait_closed()
        finally:
            await peer.close()
        if ended:
            emit({"kind": "run", "run_id": run_id, "status": ended.get("status")})
        return str(ended.get("status", ""))

    asyncio.run(main())


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
