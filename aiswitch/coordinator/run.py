"""A run: one planned request (`Coordinator.plan`) as a graph of tasks on the scheduler.

Contract:
- A `Run` holds one run's state (tasks, budget, ledger, events); the coordinator keeps
  none, so one process can host many runs.
- A sequential step gets the task plus the previous successful step's output, through
  the handoff template (placeholders `{task}`, `{previous_output}`, `{previous_agent}`,
  replaced literally), when it becomes ready.
- Every attempt runs on a process of its lane's pool (agent + preset); a task whose child
  died, hung or failed to start is retried (`retries`), one the agent failed only with
  `retry_failed`. A task's final result is recorded once: in its result, in the run's
  journal (`state/runs/<run>.jsonl`, one line), and in the throttled run file. The
  ledger and journal lines of one loop turn are written at its end, one write per file,
  the ledger's first; final results are told (`on_event`) after that.
- Usage: every `tokens.usage` notification goes to the ledger as it arrives, as its
  attempt's. That is the one source of truth: a result whose own usage differs from its
  notifications is logged and the notifications win; a result with usage and no
  notifications is recorded to the ledger once, as that attempt's; a notification for a
  task id no attempt owns is logged, recorded to the ledger against the run, and counted
  in the run's totals; an invalid one is logged and counted.
- A budget (`budget_usd`, `budget_tokens`) is checked on every usage notification; when
  crossed, nothing more starts, running attempts are cancelled, finished tasks keep their
  results, and the run ends `budget_exceeded`.
- Cancelling `Run.execute()` (Ctrl-C) cancels the tasks, stops every child, records the
  run as `cancelled`, and re-raises; the recorded run stays in `Run.result`.
- While runs go, the process's cyclic garbage collector does not run
  (`aiswitch.coordinator.quiet_gc`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiswitch.coordinator.executor import TaskSettings
from aiswitch.coordinator.executors import Executor, ExecutorHooks, ProcessRef, new_executor
from aiswitch.coordinator.graph import TaskGraph
from aiswitch.coordinator.metrics import RunMetrics, task_figures
from aiswitch.coordinator.quiet_gc import quiet_gc
from aiswitch.coordinator.request import Plan, RunEvent
from aiswitch.coordinator.results import (
    AgentResult,
    PlanRecord,
    RunFigures,
    RunResult,
    RunSettings,
    RunStatus,
    TaskStatus,
)
from aiswitch.coordinator.run_saves import RunSaves
from aiswitch.coordinator.scheduler import Scheduler
from aiswitch.coordinator.tasks import Attempt, End, Task
from aiswitch.coordinator.usage_records import UsageLine, UsageRecords
from aiswitch.errors import StateError
from aiswitch.masking import redact_text
from aiswitch.protocol.models import ProgressParams, UsageParams
from aiswitch.state.audit import audit
from aiswitch.state.runs import new_run_id
from aiswitch.supervisor.process import wait_uncancellable
from aiswitch.tokens.ledger import LedgerWriter
from aiswitch.tokens.usage import Usage

if TYPE_CHECKING:
    from aiswitch.coordinator.coordinator import Coordinator
    from aiswitch.coordinator.run_workspaces import RunWorkspaces

log = logging.getLogger("aiswitch.coordinator")


class Run:
    """One run: its tasks, budget, ledger and events. Made by `Coordinator.new_run`."""

    def __init__(
        self,
        coordinator: Coordinator,
        plan: Plan,
        *,
        on_event: Callable[[RunEvent], None] | None = None,
        resumed: RunResult | None = None,
    ) -> None:
        from aiswitch.state.processes import process_identity

        self.coordinator = coordinator
        self.plan = plan
        self.request = plan.request
        self.tasks = plan.tasks
        self.on_event = on_event
        request = self.request
        self.result = RunResult(
            run_id=resumed.run_id if resumed else new_run_id(),
            mode=request.mode,
            prompt=request.prompt,
            cwd=request.cwd,
            results=plan.results,
            pid=os.getpid(),
            pid_create_time=process_identity(os.getpid()),
            caller=request.caller,
            settings=RunSettings(
                timeout_s=request.timeout_s,
                permissions=request.permissions,
                session_id=request.session_id,
                handoff_template=(
                    request.handoff_template if request.mode == "sequential" else None
                ),
                concurrency=request.concurrency,
                retries=request.retries,
                retry_failed=request.retry_failed,
                budget_usd=request.budget_usd,
                budget_tokens=request.budget_tokens,
                workspace=request.workspace,
                with_changes=request.with_changes,
                check=request.check,
                backend=None if plan.backend.backend == "local" else plan.backend.backend,
                address=plan.backend.address,
                best_of=request.best_of,
            ),
        )
        if request.plan is not None:
            self.result.plan = PlanRecord(
                path=str(request.plan.path), sha256=request.plan.digest, name=request.plan.name
            )
        if resumed is not None:
            self.result.started_at = resumed.started_at
            self.result.resumed_from = resumed.status
        for task in self.tasks:
            task.result.task_id = f"{self.result.run_id}/{task.index}"
        # Final results so far, and those not ok: the progress view reads these counts
        # instead of counting every result on every event.
        self.finals = sum(1 for task in self.tasks if task.result.final)
        self.failures = sum(
            1 for task in self.tasks if task.result.final and task.result.status != "ok"
        )
        self.workspaces = self._workspaces()
        self.budget_hit = False
        self.failure: StateError | None = None
        # Tokens and dollars spent so far (the budget's and the live view's figures).
        self.spent_tokens = 0
        self.spent_cost = 0.0
        # By attempt id: how many tokens its provisional running totals are ahead of what
        # the ledger holds for it (shown live, never spent: `shown_tokens`).
        self._ahead: dict[str, int] = {}
        self.stray_usage = Usage()
        self.stray_cost: float | None = None
        self.scheduler: Scheduler | None = None
        self.executor: Executor | None = None
        self.metrics = RunMetrics(self)
        self._ledger: LedgerWriter | None = None
        self._journal = coordinator.runs.journal_writer(self.result.run_id)
        self._saves = RunSaves(
            coordinator.runs, self.result.run_id, self._journal, self.result.json_document
        )
        # This loop turn's ledger and journal lines and the final results to tell after
        # them (`_write_turn`).
        self._journal_lines: list[bytes] = []
        self._told: list[RunEvent] = []
        self._write_due = False
        self._durations: list[float] = []
        self._started = 0.0
        self.graph = TaskGraph(self)
        self._advertised: dict[str, tuple[str, ...]] = {}
        self._records = UsageRecords(self.run_id, caller=request.caller)

    @property
    def run_id(self) -> str:
        return self.result.run_id

    @property
    def shown_tokens(self) -> int:
        """The tokens live views show: those spent (the ledger's) plus how far the running
        attempts' provisional totals are ahead of them."""
        return self.spent_tokens + sum(self._ahead.values())

    def attempt_tokens(self, attempt: Attempt) -> int:
        """An attempt's tokens as live views show them (its provisional totals when ahead)."""
        return attempt.usage.total_tokens + self._ahead.get(attempt.id, 0)

    def _workspaces(self) -> RunWorkspaces | None:
        """The tasks' workspaces (aiswitch.coordinator.workspaces), or None: all in cwd."""
        if self.plan.workspace is None:
            return None
        from aiswitch.coordinator.run_workspaces import RunWorkspaces
        from aiswitch.coordinator.workspaces import task_names

        coordinator = self.coordinator
        workspaces = RunWorkspaces(
            coordinator.home,
            coordinator.store,
            self.run_id,
            self.plan.workspace,
            self.request.check,
            task_names(self.tasks),
        )
        workspaces.check_names(self.tasks)
        return workspaces

    # -- running ------------------------------------------------------------------

    async def execute(self) -> RunResult:
        coordinator = self.coordinator
        run = self.result
        self._started = time.monotonic()
        from aiswitch.tokens.pricing import record_pricer

        prices = {t.lane.preset.name: t.lane.preset.prices for t in self.tasks}
        self._records.price = record_pricer(coordinator.home, prices)
        self._ledger = LedgerWriter(coordinator.store)
        from aiswitch.state.processes import ProcessTable

        request = self.request
        self.executor = new_executor(
            self.plan.backend,
            home=coordinator.home,
            run_id=run.run_id,
            parent_env=coordinator.parent_env,
            settings=TaskSettings(
                cwd=request.cwd, permissions=request.permissions, session_id=request.session_id
            ),
            table=ProcessTable(coordinator.store),
            hooks=ExecutorHooks(
                on_progress=self._progress,
                on_usage=self._usage,
                on_stray_usage=self._stray_usage,
                on_assigned=self._assigned,
                on_provides=self._provides,
            ),
        )
        self.scheduler = Scheduler(
            self._attempt,
            limits=coordinator.limits(self.plan),
            retries=request.retries,
            retry_failed=request.retry_failed,
            on_final=self._final,
            on_start=self._started_attempt,
            prepare=self.graph.prepare,
            reroute=self.graph.reroute,
        )
        self.metrics.start()
        # The run file is written whole even when a Ctrl-C comes meanwhile; the run then
        # ends cancelled like any other (it stayed `running` and exited 1 before).
        begin = asyncio.get_running_loop().create_task(asyncio.to_thread(self._begin))
        with quiet_gc():
            try:
                await wait_uncancellable(begin)
                await self.executor.start()
                self.scheduler.submit(self.tasks)
                await self.scheduler.run()
            except asyncio.CancelledError:
                run.status = RunStatus.CANCELLED
                await asyncio.shield(self.scheduler.cancel())
                raise
            finally:
                # A run whose start could not be recorded has nothing to finish.
                if begin.done() and begin.exception() is None:
                    await asyncio.shield(self._finish())
        if self.failure is not None:
            raise self.failure
        return run

    def _begin(self) -> None:
        from aiswitch.coordinator.reconcile import reconcile

        reconcile(self.coordinator.store)
        entry = self.result.index_entry()
        self.coordinator.runs.record(self.run_id, self.result.json_document(), entry)
        audit(
            "run.start",
            home=self.coordinator.home,
            run_id=self.run_id,
            mode=entry["mode"],
            agents=entry["agents"],
            tasks=entry["tasks"],
        )

    async def _finish(self) -> None:
        run = self.result
        if self.executor is not None:
            self.metrics.sample()  # CPU and RSS, before the children stop
            await self.executor.close()
        # What the last turn recorded (and what stopping the children brought in).
        self._write_turn()
        if self._ledger is not None:
            await self._ledger.close()
        if self.budget_hit and run.status != RunStatus.CANCELLED:
            run.status = RunStatus.BUDGET_EXCEEDED
        for task in self.tasks:
            if not task.result.final:
                task.result.status = TaskStatus.CANCELLED
                task.result.error = task.result.error or "cancelled"
        run.totals(self.stray_usage, self.stray_cost)
        run.figures = self._figures()
        run.settle()
        run.pid = None
        await self._saves.settle()
        # The run's file and its metrics entry: two files, two locks, written at once.
        await asyncio.gather(asyncio.to_thread(self._write_end), self.metrics.close())

    def _write_end(self) -> None:
        self._journal.close()
        runs = self.coordinator.runs
        runs.record(self.run_id, self.result.json_document(), self.result.index_entry())
        if self.result.status == RunStatus.CANCELLED:
            audit("run.cancelled", home=self.coordinator.home, run_id=self.run_id)

    def _figures(self) -> RunFigures:
        elapsed = time.monotonic() - self._started
        figures = task_figures(self.result.results, self._durations, elapsed)
        if self.scheduler is not None:
            figures.retried = self.scheduler.figures.retried
            figures.peak_concurrency = self.scheduler.figures.peak_running
        if self.executor is not None:
            figures.peak_processes = self.executor.peak_processes()
        return figures

    # -- tasks ----------------------------------------------------------------------

    def _started_attempt(self, task: Task, attempt: Attempt) -> None:
        result = task.result
        result.status = TaskStatus.STARTING if attempt.number == 1 else TaskStatus.RETRYING
        result.attempts = attempt.number
        self._emit(RunEvent("status", result))

    async def _attempt(self, task: Task, attempt: Attempt, stop: Any) -> None:
        assert self.executor is not None
        workspaces = self.workspaces
        if workspaces is not None and not await workspaces.enter(task, attempt, self.tasks):
            return
        try:
            await self.executor.execute(task, attempt, stop)
        finally:
            # Ended: only what the ledger holds for it is shown from now on.
            attempt.provisional = None
            self._show_usage(task, attempt)
            self._settle_usage(task, attempt)
            if workspaces is not None:
                await asyncio.shield(workspaces.leave(task, attempt))

    def _provides(self, agent: str, provides: tuple[str, ...]) -> None:
        """An adapter advertised capabilities: remembered (once per agent and run) for
        the next plans' checks and routing."""
        if self._advertised.get(agent) == provides:
            return
        self._advertised[agent] = provides
        from aiswitch.coordinator.capability_cache import remember

        try:
            remember(self.coordinator.store, agent, list(provides))
        except StateError as exc:
            log.warning("cannot remember %s's capabilities: %s", agent, exc.one_line())

    def _assigned(self, task: Task, attempt: Attempt) -> None:
        task.result.status = TaskStatus.RUNNING
        self._emit(RunEvent("status", task.result))

    def _settle_usage(self, task: Task, attempt: Attempt) -> None:
        """The notifications are the truth; a result's own usage only fills a gap."""
        reply = attempt.reply
        if reply is None or not reply.usage.total_tokens:
            return
        if attempt.usage.total_tokens == 0:
            self._record_usage(
                task,
                attempt,
                UsageParams(
                    task_id=attempt.id,
                    usage=reply.usage,
                    model=reply.model,
                    cost_usd=reply.cost_usd,
                    session_id=reply.session_id,
                ),
            )
        elif reply.usage != attempt.usage:
            log.warning(
                "%s attempt %s: its result says %d tokens, its usage notifications %d; "
                "the notifications (in the ledger) count",
                task.result.agent_id,
                attempt.id,
                reply.usage.total_tokens,
                attempt.usage.total_tokens,
            )

    def _final(self, task: Task) -> None:
        # Each field is set only when it changes: a model field set costs more than the
        # comparison, and most already hold their final value (status aside).
        result = task.result
        attempts = task.attempts
        if result.attempts != len(attempts):
            result.attempts = len(attempts)
        if attempts:
            last = attempts[-1]
            end = last.end or End.FAILED
            result.status = _STATUS[end]
            # An agent's error may quote its environment: secret values never reach the
            # run file, the journal or the screen.
            error = None if end is End.OK else redact_text(last.error or str(end))
            if task.halted and end is not End.OK:
                error = f"stopped: {task.halted} ({error})"
            if error != result.error:
                result.error = error
            reply = last.reply
            if reply is not None:
                result.output = reply.output
                result.take_ids(reply.model, reply.session_id)
            usage = task.prior_usage
            costs = [] if task.prior_cost is None else [task.prior_cost]
            for attempt in attempts:
                usage = usage + attempt.usage
                if attempt.cost_usd is not None:
                    costs.append(attempt.cost_usd)
            if usage is not result.usage:  # most often the very object (one report)
                result.usage = usage
            cost = round(sum(costs), 8) if costs else None
            if cost != result.cost_usd:
                result.cost_usd = cost
            result.duration_s = round(last.ended - attempts[0].started, 3)
            self._durations.append(result.duration_s)
        self.finals += 1
        if result.status != "ok":
            self.failures += 1
        # On disk before anyone is told (a killed run is resumed from this line), and
        # after the ledger lines of the same turn: written, then told, at the turn's end.
        self._journal_lines.append(_journal_line(result))
        self._told.append(RunEvent("status", result))
        self._write_soon()
        self._saves.soon()

    # -- writing at the end of each loop turn -----------------------------------------

    def _write_soon(self) -> None:
        if not self._write_due:
            self._write_due = True
            asyncio.get_running_loop().call_soon(self._write_turn)

    def _write_turn(self) -> None:
        """What this turn recorded, on disk in one write per file: the usage first (the
        ledger), then the final results (the journal; a journal line never precedes the
        usage of its task), then the final results are told."""
        self._write_due = False
        if self._ledger is not None:
            try:
                self._ledger.write_queued()
            except StateError as exc:
                self._fail(exc)
        lines, self._journal_lines = self._journal_lines, []
        if lines:
            try:
                self._journal.append(b"\n".join(lines))
            except StateError as exc:
                self._fail(exc)
        told, self._told = self._told, []
        for event in told:
            self._emit(event)

    # -- notifications ------------------------------------------------------------

    def _progress(self, task: Task, attempt: Attempt, params: ProgressParams) -> None:
        if params.usage is not None and attempt.end is None:
            attempt.provisional = params.usage
            self._show_usage(task, attempt)
            self._emit(RunEvent("usage", task.result))
        if params.text or params.usage is None:
            waiting = params.kind == "waiting"
            self._emit(RunEvent("waiting" if waiting else "progress", task.result, params.text))

    def _usage(self, task: Task, attempt: Attempt, params: UsageParams) -> None:
        self._record_usage(task, attempt, params)
        self._emit(RunEvent("usage", task.result))

    def _show_usage(self, task: Task, attempt: Attempt) -> None:
        """What the task shows of its usage: the ledger's (`result.usage`), unless the
        running attempt's provisional totals are ahead of what the ledger holds for it;
        then those, over the ledger's for the task's other attempts. Never recorded."""
        provisional = attempt.provisional
        ahead = provisional.total_tokens - attempt.usage.total_tokens if provisional else 0
        if provisional is None or ahead <= 0:
            self._ahead.pop(attempt.id, None)
            task.result.show_provisional(None)
            return
        self._ahead[attempt.id] = ahead
        usage = task.prior_usage + provisional
        for other in task.attempts:
            if other is not attempt:
                usage = usage + other.usage
        task.result.show_provisional(usage)

    def _add_to_ledger(self, record: UsageLine) -> float | None:
        """Queue a priced record's line, written at the end of this loop turn with the
        turn's other usage (`_write_turn`); its cost. When it cannot be written (a full
        disk), nothing more starts and the run ends with that error (raised by `execute`)."""
        assert self._ledger is not None
        self._ledger.queue_line(record.line)
        self._write_soon()
        return record.cost_usd

    def _fail(self, exc: StateError) -> None:
        """A state file cannot be written (a full disk): nothing more starts, and the run
        ends with this error (raised by `execute`), never in a callback's traceback."""
        if self.failure is None:
            self.failure = exc
            log.error("the run cannot go on: %s", exc.one_line())
            if self.scheduler is not None:
                self.scheduler.stop_new(exc.message)

    def _record_usage(self, task: Task, attempt: Attempt, params: UsageParams) -> None:
        assert self._ledger is not None
        result = task.result
        workspace = result.workspace
        cost = self._add_to_ledger(
            self._records.for_attempt(
                result,
                attempt.number,
                task.lane,
                params,
                branch=workspace.branch if workspace is not None else None,
            )
        )
        attempt.add_usage(params.usage, cost)
        # The live view shows what the task has spent so far, over all its attempts.
        result.usage = result.usage + params.usage
        if attempt.provisional is not None:
            self._show_usage(task, attempt)
        if cost is not None:
            result.cost_usd = round((result.cost_usd or 0.0) + cost, 8)
        result.take_ids(params.model, params.session_id)
        if task.budget_usd is not None and (result.cost_usd or 0.0) >= task.budget_usd:
            self._over_task_budget(task, attempt)
        self._check_budget(params.usage, cost)

    def _over_task_budget(self, task: Task, attempt: Attempt) -> None:
        """A task's own `budget_usd` reached: its attempt in flight is cancelled and no
        other starts (the run goes on)."""
        if task.halted:
            return
        task.halted = (
            f"its cost ${task.result.cost_usd:g} reached its budget_usd ${task.budget_usd:g}"
        )
        if self.executor is not None and attempt.end is None:
            self.executor.cancel_attempt(attempt, task.halted)

    def _stray_usage(self, handle: ProcessRef, params: UsageParams) -> None:
        assert self._ledger is not None
        log.warning(
            "%s sent usage for task id %r, which no attempt of this run owns; recorded "
            "against the run",
            handle.agent_id,
            params.task_id,
        )
        cost = self._add_to_ledger(self._records.stray(handle, params))
        self.stray_usage = self.stray_usage + params.usage
        if cost is not None:
            self.stray_cost = round((self.stray_cost or 0.0) + cost, 8)
        self._check_budget(params.usage, cost)

    def _check_budget(self, usage: Usage, cost: float | None) -> None:
        request = self.request
        self.spent_tokens += usage.total_tokens
        self.spent_cost += cost or 0.0
        if self.budget_hit:
            return
        over_tokens = (
            request.budget_tokens is not None and self.spent_tokens >= request.budget_tokens
        )
        over_usd = request.budget_usd is not None and self.spent_cost >= request.budget_usd
        if over_tokens or over_usd:
            self.stop_for_budget("the run's budget was exceeded")

    def stop_for_budget(self, reason: str) -> None:
        """A budget is spent (the run's own, or one it shares, such as an MCP session's):
        nothing more starts, the attempts in flight are cancelled with `reason`, and the
        run ends `budget_exceeded`. Before the run has begun there is nothing to stop."""
        if self.budget_hit or self.scheduler is None:
            return
        self.budget_hit = True
        self.scheduler.stop_new(reason)

    # -- saving ---------------------------------------------------------------------

    def _emit(self, event: RunEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)


_STATUS = {
    End.OK: TaskStatus.OK,
    End.FAILED: TaskStatus.FAILED,
    End.TIMEOUT: TaskStatus.TIMEOUT,
    End.CANCELLED: TaskStatus.CANCELLED,
    End.CRASHED: TaskStatus.FAILED,
    End.HUNG: TaskStatus.FAILED,
    End.START_FAILED: TaskStatus.FAILED,
    End.INVALID: TaskStatus.FAILED,
    End.PROVIDER: TaskStatus.FAILED,
}


def _journal_line(result: AgentResult) -> bytes:
    return result.model_dump_json().encode()
