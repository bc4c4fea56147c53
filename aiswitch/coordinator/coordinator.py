"""The coordinator: turns a request into a `Run` (aiswitch.coordinator.run).

Contract:
- `Coordinator.plan(request)` checks everything that can be checked before a process
  starts (empty task, unknown agent, missing program, unknown preset, unresolved reference,
  quota, bad limits) and raises without starting anything. Every run is a graph of tasks
  built one way (`request_specs`, then `TaskBuilder`): parallel, every lane gets the task;
  sequential, a chain (each step depends on the one before); a batch (`--tasks`), every
  task on every lane; a plan (`--plan`), its own graph.
- `Coordinator.resume(run_id)` makes a Run of an interrupted run: its finished tasks (in
  its journal) stay final, the others run again, their attempts numbered on; a plan's
  file must be what it was (its digest), or the resume is refused with the reason.
- The coordinator keeps no run's state (that is the `Run`'s), so one process can host
  many runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from aiswitch.agents import AgentRegistry
from aiswitch.coordinator.build import TaskBuilder
from aiswitch.coordinator.executor import LocalExecutor
from aiswitch.coordinator.executors import check_available, choose_backend
from aiswitch.coordinator.request import (
    DEFAULT_HANDOFF_TEMPLATE,
    BatchItem,
    Plan,
    RunEvent,
    RunRequest,
    check_request,
    request_specs,
)
from aiswitch.coordinator.results import RunResult, TaskStatus
from aiswitch.coordinator.run import Run
from aiswitch.coordinator.scheduler import Limits
from aiswitch.coordinator.specs import AgentSpec
from aiswitch.coordinator.tasks import Lane
from aiswitch.coordinator.workspaces import plan_source
from aiswitch.errors import ConfigError, UsageError
from aiswitch.home import Home
from aiswitch.presets.resolve import PresetResolver, ResolvedPreset
from aiswitch.protocol.models import EnvState
from aiswitch.rates import RateLimit, parse_rate
from aiswitch.state.runs import RunStore
from aiswitch.state.store import StateStore
from aiswitch.supervisor.handle import AgentHandle
from aiswitch.tokens.usage import Usage

QuotaCheck = Callable[[str, str | None], None]


class Coordinator:
    """What every run needs from this machine: the home, agents, presets, quotas."""

    def __init__(
        self,
        home: Home | None = None,
        *,
        registry: AgentRegistry | None = None,
        resolve_preset: PresetResolver | None = None,
        parent_env: Mapping[str, str] | None = None,
        check_quota: QuotaCheck | None = None,
    ) -> None:
        self.home = home or Home.current()
        self.store = StateStore(self.home)
        self.registry = registry or AgentRegistry.load(self.home)
        self.parent_env = dict(os.environ if parent_env is None else parent_env)
        if resolve_preset is None:
            # The preset store's resolution order (spec, shell, agent default, global).
            from aiswitch.presets.resolve import run_resolver

            resolve_preset = run_resolver(self.home, self.parent_env)
        self.resolve_preset = resolve_preset
        self.check_quota = check_quota
        self.runs = RunStore(self.store)

    # -- planning -----------------------------------------------------------------

    def plan(self, request: RunRequest) -> Plan:
        """Check everything that can be checked before a process starts, and build the
        run's tasks from its specs (`request_specs`: one shape per kind of run)."""
        check_request(request)
        plan = TaskBuilder(self, request).build(request_specs(request))
        plan.workspace = plan_source(request, plan.tasks, self.home.config)
        plan.backend = choose_backend(self.home.config, request.backend, request.address)
        check_available(plan.backend)
        return plan

    def new_run(
        self,
        request: RunRequest,
        plan: Plan | None = None,
        *,
        on_event: Callable[[RunEvent], None] | None = None,
        resumed: RunResult | None = None,
    ) -> Run:
        return Run(self, plan or self.plan(request), on_event=on_event, resumed=resumed)

    def resume(self, run_id: str, *, on_event: Callable[[RunEvent], None] | None = None) -> Run:
        """The interrupted run `run_id` again: its unfinished tasks run, finished ones stay
        (their recorded results feed their dependants)."""
        from aiswitch.coordinator.reconcile import interrupted_run

        previous, finished = interrupted_run(self.store, run_id)
        request = self._request_of(previous)
        plan = self.plan(request)
        if len(plan.tasks) != len(previous.results):
            raise UsageError(
                f"run {run_id} cannot be resumed: it recorded {len(previous.results)} tasks, "
                f"its request now makes {len(plan.tasks)}"
            )
        for task, result in zip(plan.tasks, previous.results, strict=True):
            task.result = result
            task.priority = result.priority
            task.options = result.options
            task.final = result.task_id in finished
            task.attempt_base = result.attempts
            if not task.final:
                task.prior_usage, task.prior_cost = result.usage, result.cost_usd
                result.status, result.error = TaskStatus.PENDING, None
                # It starts again where it was planned (it may have failed over before).
                lane = task.lane
                result.agent, result.preset = lane.agent.name, lane.preset.name
                result.agent_id = plan.agent_ids.get(lane.key, result.agent_id)
        return Run(self, plan, on_event=on_event, resumed=previous)

    def rerun(
        self,
        run_id: str,
        *,
        failed_only: bool = False,
        on_event: Callable[[RunEvent], None] | None = None,
    ) -> Run:
        """A new run of what `run_id` ran. `failed_only`: its tasks that ended ok are kept
        as they were (their output, for the tasks that depend on them; no usage of this
        run), the others run again."""
        from aiswitch.coordinator.history import finished_run, is_live

        previous = finished_run(self.store, run_id)
        if failed_only and is_live(previous):
            raise UsageError(f"run {run_id} is still running", hint="wait for it to end")
        plan = self.plan(self._request_of(previous))
        if not failed_only:
            return Run(self, plan, on_event=on_event)
        if len(plan.tasks) != len(previous.results):
            raise UsageError(
                f"run {run_id} cannot be rerun with --failed: it recorded "
                f"{len(previous.results)} tasks, its request now makes {len(plan.tasks)}",
                hint=f"rerun all of it: aiswitch runs rerun {run_id}",
            )
        if all(r.status == TaskStatus.OK for r in previous.results):
            raise UsageError(f"run {run_id} has no failed task", hint="nothing to rerun")
        for task, result in zip(plan.tasks, previous.results, strict=True):
            if result.status == TaskStatus.OK:
                task.result = result.model_copy(
                    update={"usage": Usage(), "cost_usd": None, "attempts": 0, "duration_s": 0.0}
                )
                task.final = True
        return Run(self, plan, on_event=on_event)

    def _request_of(self, previous: RunResult) -> RunRequest:
        """The request that made `previous` (a plan: its file, unchanged since)."""
        settings = previous.settings
        plan = None
        if previous.plan is not None:
            from aiswitch.coordinator.plan_check import reread_plan

            plan = reread_plan(previous.plan.path, previous.plan.sha256, previous.run_id)
        lane_of: dict[str, AgentSpec] = {}
        for result in previous.results:
            lane_of.setdefault(result.agent_id, AgentSpec(result.agent, result.preset))
        batch = previous.mode == "batch"
        lanes = len(lane_of)
        return RunRequest(
            mode=previous.mode,
            specs=list(lane_of.values()),
            prompt=previous.prompt,
            timeout_s=settings.timeout_s,
            cwd=previous.cwd,
            handoff_template=settings.handoff_template or DEFAULT_HANDOFF_TEMPLATE,
            budget_usd=settings.budget_usd,
            budget_tokens=settings.budget_tokens,
            permissions=settings.permissions,
            session_id=settings.session_id,
            concurrency=settings.concurrency,
            retries=settings.retries,
            retry_failed=settings.retry_failed,
            workspace=settings.workspace,
            with_changes=settings.with_changes,
            check=settings.check,
            backend=settings.backend,
            address=settings.address,
            best_of=settings.best_of,
            caller=previous.caller,
            batch=(
                [BatchItem(prompt=r.prompt or "", id=r.id) for r in previous.results[::lanes]]
                if batch
                else None
            ),
            plan=plan,
        )

    def lane(self, spec: AgentSpec) -> Lane:
        """The lane `spec` names: its agent (available here), preset and quota checked."""
        agent = self.registry.get(spec.name)
        agent.check_available()
        preset = self.resolve_preset(spec.preset, agent)
        if self.check_quota is not None:
            self.check_quota(spec.name, preset.name)
        return Lane(agent, preset)

    async def run(
        self,
        request: RunRequest,
        plan: Plan | None = None,
        *,
        on_event: Callable[[RunEvent], None] | None = None,
    ) -> RunResult:
        """Plan (unless given) and run `request` to its end."""
        return await self.new_run(request, plan, on_event=on_event).execute()

    async def switch_preset(self, handle: AgentHandle, preset: str | None) -> EnvState:
        """Give a live agent another preset from its next task on, without a restart.

        The preset is resolved first (unknown preset, unresolved reference: the error is
        raised and nothing is sent, so the agent keeps what it had). Settings an adapter
        reads only at start need a new process: a pool per preset gives one."""
        resolved = self.resolve_preset(preset, handle.agent) if preset else ResolvedPreset(None)
        lane = Lane(handle.agent, resolved)
        target = LocalExecutor.lane_env(
            self.home, self.parent_env, handle.run_id, lane, handle.agent_id
        )
        return await handle.switch_env(target, resolved.name)

    def limits(self, plan: Plan) -> Limits:
        """The scheduler's limits for `plan`: --concurrency, the agents' own, rates."""
        limits = Limits(concurrency=plan.request.concurrency)
        for task in plan.tasks:
            agent = task.lane.agent
            if agent.max_concurrency is not None:
                limits.per_agent[agent.name] = agent.max_concurrency
            if agent.rate is not None and agent.name not in limits.rates:
                limits.rates[agent.name] = parse_rate(agent.rate)
            rate = task.lane.preset.rate
            if rate is not None and task.lane.key not in limits.rates:
                limits.rates[task.lane.key] = _preset_rate(task.lane.preset.name, rate)
        return limits


def _preset_rate(preset: str | None, rate: str) -> RateLimit:
    try:
        return parse_rate(rate)
    except ValueError as exc:
        raise ConfigError(f"preset {preset!r}: {exc}") from None
