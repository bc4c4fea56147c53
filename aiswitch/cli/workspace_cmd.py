"""`aiswitch diff`, `compare`, `apply` and `workspaces list|clean`: a run's workspaces.

The logic is in aiswitch.workspace; these commands find what the user names, call it, and
print. docs/workspaces.md describes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from aiswitch.errors import WorkspaceError

if TYPE_CHECKING:
    import typer
    from rich.console import Console

    from aiswitch.coordinator.results import AgentResult, RunResult
    from aiswitch.state.store import StateStore
    from aiswitch.workspace.model import Workspace


def _store() -> StateStore:
    from aiswitch.home import Home
    from aiswitch.state.store import StateStore

    return StateStore(Home.current().ensure())


def _console() -> Console:
    from rich.console import Console

    return Console()


def _load_run(store: StateStore, run_id: str) -> RunResult:
    from pydantic import ValidationError

    from aiswitch.coordinator.results import RunResult
    from aiswitch.state.runs import RunStore
    from aiswitch.workspace.records import UNKNOWN_RUN_HINT

    document = RunStore(store).load(run_id)
    if document is None:
        raise WorkspaceError(f"unknown run {run_id!r}", hint=UNKNOWN_RUN_HINT)
    try:
        return RunResult.model_validate(document)
    except ValidationError:
        raise WorkspaceError(f"the run file of {run_id} is not a run") from None


# -- diff -------------------------------------------------------------------------------


def diffs(
    store: StateStore, run_id: str, key: str | None, *, stat: bool = False, color: bool = False
) -> list[tuple[Workspace, bytes]]:
    """Each workspace of the run (or the one `key` names) with its `git diff base tip`:
    what `aiswitch diff` prints and the MCP `diff` tool returns."""
    from aiswitch.workspace.changes import repo_of
    from aiswitch.workspace.records import drift, find, for_run

    found = [find(store, run_id, key)] if key else for_run(store, run_id)
    out: list[tuple[Workspace, bytes]] = []
    for ws in found:
        label = ws.agent_id or ws.name
        if ws.base is None or ws.tip is None:
            raise WorkspaceError(f"{label} has no recorded changes (did its task end?)")
        repo = repo_of(ws)
        if not repo.is_dir():
            raise WorkspaceError(f"{label}: {drift(ws) or 'its workspace is gone'}")
        args = ["git", "diff", "--color=always" if color else "--color=never"]
        args += ["--stat"] if stat else []
        done = subprocess.run([*args, ws.base, ws.tip], cwd=repo, capture_output=True, check=False)
        if done.returncode != 0:
            raise WorkspaceError(f"git diff of {label} failed: {done.stderr.decode().strip()}")
        out.append((ws, done.stdout))
    return out


def diff(run_id: str, key: str | None, stat: bool) -> int:
    terminal = sys.stdout.isatty()
    found = diffs(_store(), run_id, key, stat=stat, color=terminal)
    chunks: list[bytes] = []
    for ws, text in found:
        if len(found) > 1:
            chunks.append(f"# {ws.agent_id or ws.name} ({ws.branch or ws.mode})\n".encode())
        chunks.append(text)
    _page(b"".join(chunks), terminal)
    return 0


def _page(data: bytes, terminal: bool) -> None:
    """On a terminal, through git's pager (less -R unless configured); else as it is."""
    if terminal and data.count(b"\n") > os.get_terminal_size().lines - 2:
        pager = os.environ.get("GIT_PAGER") or os.environ.get("PAGER") or "less -FRX"
        subprocess.run(pager, shell=True, input=data, check=False)  # noqa: S602 (the user's)
        return
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


# -- compare ----------------------------------------------------------------------------


def ranked(results: list[AgentResult]) -> list[AgentResult]:
    """Best first: ok before not, a passing check before none before a failing one, then
    fewer tokens, lower cost, less time."""

    def key(result: AgentResult) -> tuple[Any, ...]:
        check = result.workspace.check if result.workspace else None
        check_rank = 1 if check is None else (0 if check.passed else 2)
        return (
            result.status != "ok",
            check_rank,
            result.usage.total_tokens,
            result.cost_usd if result.cost_usd is not None else float("inf"),
            result.duration_s,
        )

    return sorted(results, key=key)


def compare_rows(run: RunResult) -> list[dict[str, Any]]:
    rows = []
    for rank, result in enumerate(ranked(run.results), start=1):
        ws = result.workspace
        changes = ws.changes if ws else None
        check = ws.check if ws else None
        rows.append(
            {
                "rank": rank,
                "agent_id": result.agent_id,
                "task_id": result.task_id,
                "status": str(result.status),
                "check": None if check is None else ("passed" if check.passed else "failed"),
                "check_exit_code": check.exit_code if check else None,
                "files": changes.files if changes else None,
                "insertions": changes.insertions if changes else None,
                "deletions": changes.deletions if changes else None,
                "total_tokens": result.usage.total_tokens,
                "cost_usd": result.cost_usd,
                "duration_s": result.duration_s,
                "branch": ws.branch if ws else None,
                "path": ws.root if ws and ws.isolated else None,
            }
        )
    return rows


def render_ranking(console: Console, run: RunResult) -> None:
    from rich.table import Table

    from aiswitch.cli.results_view import format_cost

    table = Table(title=f"run {run.run_id}, best first", title_justify="left", box=None)
    for column in ("#", "agent", "status", "check", "files", "±lines", "tokens", "cost", "time"):
        table.add_column(column, no_wrap=True)
    for row in compare_rows(run):
        lines = "-" if row["files"] is None else f"+{row['insertions']} -{row['deletions']}"
        table.add_row(
            str(row["rank"]),
            row["agent_id"],
            row["status"],
            row["check"] or "-",
            "-" if row["files"] is None else str(row["files"]),
            lines,
            f"{row['total_tokens']:,}",
            format_cost(row["cost_usd"]),
            f"{row['duration_s']:.1f}s",
        )
    console.print(table)


def compare_document(store: StateStore, run_id: str) -> dict[str, Any]:
    """`aiswitch compare --json`'s document (and the MCP `compare` tool's)."""
    run = _load_run(store, run_id)
    return {"run_id": run.run_id, "status": str(run.status), "agents": compare_rows(run)}


def compare(run_id: str, as_json: bool) -> int:
    if as_json:
        document = compare_document(_store(), run_id)
        sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
        return 0
    render_ranking(_console(), _load_run(_store(), run_id))
    return 0


# -- apply ------------------------------------------------------------------------------


def apply(run_id: str, key: str, how: str, keep: bool) -> int:
    from aiswitch.workspace.apply import HOWS

    if how not in HOWS:
        raise WorkspaceError(f"unknown --as {how!r}", hint="use patch, merge or cherry-pick")
    done = apply_workspace(_store(), run_id, key, how, keep)
    sys.stderr.write(
        f"aiswitch: applied {done['agent_id']} ({done['files']} files) to {done['target']} "
        f"as {how}\n"
    )
    if not keep:
        sys.stderr.write(
            f"aiswitch: removed the run's {done['removed_workspaces']} workspaces "
            "(--keep keeps them)\n"
        )
    return 0


def apply_workspace(
    store: StateStore, run_id: str, key: str, how: str, keep: bool
) -> dict[str, Any]:
    """Apply one workspace's changes (and, unless `keep`, remove the run's workspaces):
    what `aiswitch apply` does and the MCP `apply` tool calls."""
    from aiswitch.workspace.apply import apply as apply_changes
    from aiswitch.workspace.make import remove
    from aiswitch.workspace.records import find, forget, load

    ws = find(store, run_id, key)
    files = apply_changes(store, ws, how)  # type: ignore[arg-type]
    removed = 0
    if not keep:
        # The run's question is answered: its workspaces go (the applied one's work is in
        # your tree now).
        others = load(store, run_id)
        for each in others:
            remove(each)
            forget(store, each)
        removed = len(others)
    return {
        "run_id": run_id,
        "agent_id": ws.agent_id or ws.name,
        "files": files,
        "target": ws.source,
        "how": how,
        "removed_workspaces": removed,
    }


# -- workspaces list | clean ------------------------------------------------------------


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def list_workspaces(run_id: str | None, as_json: bool) -> int:
    from pathlib import Path

    from aiswitch.workspace.apply import unapplied
    from aiswitch.workspace.records import disk_usage, drift, for_run, load_all

    store = _store()
    found = for_run(store, run_id) if run_id else load_all(store)
    rows: list[dict[str, Any]] = []
    for ws in found:
        problem = drift(ws)
        rows.append(
            {
                "run_id": ws.run_id,
                "agent_id": ws.agent_id,
                "mode": ws.mode,
                "path": ws.root,
                "branch": ws.branch,
                "disk_bytes": disk_usage(Path(ws.root)) if Path(ws.root).is_dir() else 0,
                "files": ws.changes.files if ws.changes else None,
                "applied": ws.applied,
                "unapplied_work": unapplied(ws) if problem is None else None,
                "problem": problem,
                "created_at": ws.created_at.isoformat(),
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return 0
    from rich.table import Table

    table = Table(box=None)
    for column in ("run", "agent", "mode", "disk", "files", "state", "path"):
        table.add_column(column, no_wrap=column != "path")
    for row in rows:
        state = row["problem"] or (
            f"applied ({row['applied']})"
            if row["applied"]
            else "unapplied work"
            if row["unapplied_work"]
            else "nothing to apply"
        )
        table.add_row(
            row["run_id"],
            row["agent_id"],
            row["mode"],
            _size(row["disk_bytes"]),
            "-" if row["files"] is None else str(row["files"]),
            state,
            row["path"],
        )
    console = _console()
    console.print(table)
    total = sum(r["disk_bytes"] for r in rows)
    console.print(f"{len(rows)} workspaces, {_size(total)}", highlight=False)
    return 0


def clean(run_id: str | None, older_than: str | None, force: bool) -> int:
    from aiswitch.workspace.apply import clean as clean_workspaces
    from aiswitch.workspace.apply import parse_age
    from aiswitch.workspace.records import for_run, load_all

    age = parse_age(older_than) if older_than else None
    store = _store()
    found = for_run(store, run_id) if run_id else load_all(store)
    removed, kept = clean_workspaces(store, found, older_than=age, force=force)
    for ws, why in kept:
        sys.stderr.write(f"aiswitch: kept {ws.run_id} {ws.agent_id or ws.name}: {why}\n")
    for warning in store.warnings:
        sys.stderr.write(f"aiswitch: warning: {warning}\n")
    sys.stdout.write(f"removed {len(removed)} workspaces, kept {len(kept)}\n")
    return 0


def register(app: typer.Typer) -> None:
    import typer

    def diff_cmd(
        run_id: str = typer.Argument(..., metavar="RUN"),
        key: str | None = typer.Argument(None, metavar="[AGENT_ID|TASK_ID]"),
        stat: bool = typer.Option(False, "--stat", help="Only the files changed and counts."),
    ) -> None:
        """Show what a run's agents changed, against the base each workspace started from."""
        raise typer.Exit(diff(run_id, key, stat))

    def compare_cmd(
        run_id: str = typer.Argument(..., metavar="RUN"),
        as_json: bool = typer.Option(False, "--json", help="Print the ranking as JSON."),
    ) -> None:
        """A run's agents side by side, best first: status, check, files, ±lines, tokens,
        cost, time."""
        raise typer.Exit(compare(run_id, as_json))

    def apply_cmd(
        run_id: str = typer.Argument(..., metavar="RUN"),
        key: str = typer.Argument(..., metavar="AGENT_ID"),
        how: str = typer.Option("patch", "--as", help="patch, merge or cherry-pick."),
        keep: bool = typer.Option(False, "--keep", help="Keep the workspace after applying."),
    ) -> None:
        """Bring one agent's changes into your tree, all or nothing."""
        raise typer.Exit(apply(run_id, key, how, keep))

    workspaces = typer.Typer(help="List and clean up the agents' workspaces.", no_args_is_help=True)

    @workspaces.command("list")
    def list_cmd(
        run_id: str | None = typer.Option(None, "--run", help="Only this run's."),
        as_json: bool = typer.Option(False, "--json", help="Print them as JSON."),
    ) -> None:
        """Every workspace with the disk it uses and whether it holds unapplied work."""
        raise typer.Exit(list_workspaces(run_id, as_json))

    @workspaces.command("clean")
    def clean_cmd(
        run_id: str | None = typer.Option(None, "--run", help="Only this run's."),
        older_than: str | None = typer.Option(
            None, "--older-than", help="Only those made longer ago than this (7d, 12h, 30m)."
        ),
        force: bool = typer.Option(False, "--force", help="Also those with unapplied work."),
    ) -> None:
        """Remove workspaces (their folders and branches); unapplied work stays unless
        --force."""
        raise typer.Exit(clean(run_id, older_than, force))

    app.command("diff")(diff_cmd)
    app.command("compare")(compare_cmd)
    app.command("apply")(apply_cmd)
    app.add_typer(workspaces, name="workspaces")
