"""Past runs, as `aiswitch runs list|show|rm|rerun` see them.

Contract:
- Every function first puts right what a killed coordinator left (`reconcile`), so a run
  whose coordinator died reads `interrupted`, never `running`.
- `list_runs` reads the index only (`state/tasks.json`: one short entry per run), newest
  first; `finished_run` reads one run's own file, the document `aiswitch run --json`
  printed when the run ended.
- `remove_run` forgets a finished run (index entry, file, journal); a live run is refused
  (cancel it first). A run id names files, so it is checked before any is touched.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from aiswitch.coordinator.reconcile import reconcile
from aiswitch.coordinator.results import RunResult, RunStatus
from aiswitch.errors import StateError, UsageError
from aiswitch.state.processes import is_same_process
from aiswitch.state.runs import RunStore, check_run_id
from aiswitch.state.store import StateStore

_STATUSES = {str(s) for s in RunStatus}


def list_runs(
    store: StateStore,
    *,
    status: str | None = None,
    since: date | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Index entries, newest first: of `status`, started on or after `since` (local day)."""
    if status is not None and status not in _STATUSES:
        raise UsageError(
            f"--status: unknown status {status!r}",
            hint=f"use one of {', '.join(sorted(_STATUSES))}",
        )
    if limit is not None and limit < 1:
        raise UsageError("--limit must be 1 or more")
    reconcile(store)
    entries = []
    for entry in reversed(RunStore(store).index()):
        if status is not None and entry.get("status") != status:
            continue
        if since is not None:
            started = _parse_time(entry.get("started_at"))
            if started is None or started.astimezone().date() < since:
                continue
        entries.append(entry)
        if limit is not None and len(entries) >= limit:
            break
    return entries


def finished_run(store: StateStore, run_id: str) -> RunResult:
    """The run `run_id` as its file holds it (reconciled first)."""
    check_run_id(run_id)
    reconcile(store)
    runs = RunStore(store)
    document = runs.load(run_id)
    if document is None:
        raise UsageError(f"no run {run_id!r}", hint="`aiswitch runs list` shows the runs")
    try:
        return RunResult.model_validate(document)
    except ValueError:
        raise StateError(
            f"the file of run {run_id!r} is not a run", hint=f"remove {runs.path(run_id)}"
        ) from None


def is_live(run: RunResult) -> bool:
    """True while the run's coordinator process is alive (pid and its create time)."""
    return (
        run.status == RunStatus.RUNNING
        and run.pid is not None
        and is_same_process(run.pid, run.pid_create_time)
    )


def remove_run(store: StateStore, run_id: str) -> None:
    run = finished_run(store, run_id)
    if is_live(run):
        raise UsageError(
            f"run {run_id} is still running", hint=f"cancel it first: aiswitch runs cancel {run_id}"
        )
    RunStore(store).remove(run_id)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
