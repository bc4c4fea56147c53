"""What a killed coordinator left behind, put right by the next invocation.

Contract:
- `reconcile(store)` reaps agent processes whose parent is gone (`state/agents.json`),
  and marks every run that says `running` but whose coordinator is gone (pid + create
  time) as `interrupted`: its results are completed from its journal (the final results
  that reached disk) and, for tasks that never finished, from the ledger (the usage and
  session ids their attempts reported before the kill). Run totals then equal the ledger.
- `interrupted_run(store, run_id)` loads a run for `aiswitch runs resume`, reconciled the
  same way; a run that is still running, or finished, is refused with a clear error.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from aiswitch.coordinator.results import RunResult, RunStatus, TaskStatus
from aiswitch.errors import StateError, UsageError
from aiswitch.state.processes import is_same_process
from aiswitch.state.runs import RUN_ID_PATTERN, RunStore
from aiswitch.state.store import StateStore
from aiswitch.supervisor.orphans import reap_orphans
from aiswitch.tokens.usage import Usage


def reconcile(store: StateStore) -> list[str]:
    """Reap orphans, mark runs of dead coordinators interrupted; return their ids."""
    reap_orphans(store)
    runs = RunStore(store)
    marked = []
    for entry in runs.index():
        if entry.get("status") != RunStatus.RUNNING:
            continue
        pid, created = entry.get("pid"), entry.get("pid_create_time")
        if isinstance(pid, int) and is_same_process(pid, created):
            continue
        run_id = str(entry.get("run_id"))
        with contextlib.suppress(StateError):
            run = _completed(runs, store, run_id)
            if run is not None:
                run.status = RunStatus.INTERRUPTED
                run.pid = None
                runs.record(run_id, run.json_document(), run.index_entry())
                marked.append(run_id)
        # The control socket of a dead run: nobody listens on it any more.
        if RUN_ID_PATTERN.fullmatch(run_id):
            with contextlib.suppress(OSError):
                runs.socket_path(run_id).unlink(missing_ok=True)
    return marked


def _completed(runs: RunStore, store: StateStore, run_id: str) -> RunResult | None:
    """The run as its file, journal and ledger tell it."""
    document = runs.load(run_id)
    if document is None:
        return None
    run = RunResult.model_validate(document)
    finished = {e.get("task_id"): e for e in runs.journal(run_id)}
    spent = _ledger_usage(store, run_id)
    for index, result in enumerate(run.results):
        entry = finished.get(result.task_id)
        if entry is not None:
            run.results[index] = type(result).model_validate(entry)
            continue
        usage, cost, session, attempts = spent.get(result.task_id, (Usage(), None, None, 0))
        result.usage, result.cost_usd = usage, cost
        result.session_id = session or result.session_id
        # The run file may predate the last attempts; the ledger knows the ones that spent.
        result.attempts = max(result.attempts, attempts)
        if result.status not in (TaskStatus.PENDING,):
            result.status = TaskStatus.CANCELLED
            result.error = "interrupted: its coordinator was killed"
    stray = spent.get(None, (Usage(), None, None, 0))
    run.totals(stray[0], stray[1])
    return run


Spent = tuple[Usage, float | None, str | None, int]


def _ledger_usage(store: StateStore, run_id: str) -> dict[str | None, Spent]:
    """Per task id of `run_id`: usage, cost, last session id and highest attempt number,
    from the ledger."""
    totals: dict[str | None, Spent] = {}
    needle = run_id.encode()
    try:
        handle = store.home.ledger.open("rb")
    except FileNotFoundError:
        return totals
    with handle:
        for line in handle:
            if needle not in line:
                continue
            try:
                record: Any = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or record.get("run_id") != run_id:
                continue
            key = record.get("task_id")
            usage, cost, session, attempts = totals.get(key, (Usage(), None, None, 0))
            usage = usage + Usage(
                input_tokens=int(record.get("input_tokens", 0)),
                output_tokens=int(record.get("output_tokens", 0)),
                cache_read_tokens=int(record.get("cache_read_tokens", 0)),
                cache_write_tokens=int(record.get("cache_write_tokens", 0)),
                reasoning_tokens=int(record.get("reasoning_tokens", 0)),
            )
            if record.get("cost_usd") is not None:
                cost = round((cost or 0.0) + float(record["cost_usd"]), 8)
            attempt = record.get("attempt")
            if isinstance(attempt, int):
                attempts = max(attempts, attempt)
            totals[key] = (usage, cost, record.get("session_id") or session, attempts)
    return totals


def interrupted_run(store: StateStore, run_id: str) -> tuple[RunResult, set[str]]:
    """The interrupted run `run_id`, reconciled, and the ids of its finished tasks (those
    in its journal), for `runs resume`."""
    reconcile(store)
    runs = RunStore(store)
    if not runs.path(run_id).exists():
        raise UsageError(f"no run {run_id!r}", hint="`aiswitch runs list` shows the runs")
    run = _completed(runs, store, run_id)
    if run is None:
        raise StateError(f"the file of run {run_id!r} is not a run")
    if run.status == RunStatus.RUNNING:
        raise UsageError(f"run {run_id} is still running", hint="wait for it, or cancel it")
    finished = {str(e.get("task_id")) for e in runs.journal(run_id)}
    if all(r.task_id in finished for r in run.results):
        raise UsageError(f"run {run_id} has no unfinished task", hint="nothing to resume")
    return run, finished
