"""`aiswitch runs`: runs recorded under the home.

`runs resume RUN_ID` finishes an interrupted run (its coordinator was killed): the tasks
that had not finished run again, under the same run id; a task that finished (its result
is in the run's journal) never runs again.
"""

from __future__ import annotations

import asyncio

import typer

from aiswitch.errors import UsageError

runs_app = typer.Typer(help="Runs recorded under the aiswitch home.", no_args_is_help=True)


@runs_app.command("resume")
def resume(
    run_id: str = typer.Argument(..., help="The run to finish (its run_id)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON document (docs/run-json.md)."
    ),
    as_jsonl: bool = typer.Option(
        False, "--jsonl", help="Print one JSON line per task as it ends, then one for the run."
    ),
) -> None:
    """Run an interrupted run's unfinished tasks again (finished ones are kept)."""
    from aiswitch.cli.run_cmd import coordinator_for_cli, present

    if as_json and as_jsonl:
        raise UsageError("give --json or --jsonl, not both")
    output = "json" if as_json else "jsonl" if as_jsonl else "human"
    coordinator = coordinator_for_cli()

    async def main() -> int:
        return await present(
            coordinator, lambda on_event: coordinator.resume(run_id, on_event=on_event), output
        )

    raise typer.Exit(asyncio.run(main()))


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
