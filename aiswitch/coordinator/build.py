"""Tasks built from specs: the one way every run (parallel, sequential, batch, plan) gets
its tasks.

Contract:
- `TaskBuilder(coordinator, request).build(specs)` resolves each spec's agent lane (agent
  definition, its program, the preset, the quota), a capability's candidate lanes (the
  agents whose `capabilities` in config/agents.yaml, or whose adapters' advertised
  capabilities (`capability_cache`), include it; those that cannot run here are left
  out), the fallback lanes, and dependency ids to task indices.
- For a plain run the first problem is raised as it always was (its own error and exit
  code). For a plan every problem is collected and raised together as one `PlanError`
  (exit 3), one line per problem naming the file and the task.
- A task whose own lane is over its quota starts on its first fallback lane that is not.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from aiswitch.coordinator.placeholders import PLACEHOLDER
from aiswitch.coordinator.request import Plan, RunRequest, TaskSpec
from aiswitch.coordinator.results import AgentResult
from aiswitch.coordinator.specs import AgentSpec
from aiswitch.coordinator.tasks import Lane, Task
from aiswitch.errors import AiswitchError, PlanError, QuotaExceededError

if TYPE_CHECKING:
    from aiswitch.coordinator.coordinator import Coordinator


class TaskBuilder:
    def __init__(self, coordinator: Coordinator, request: RunRequest) -> None:
        self.coordinator = coordinator
        self.request = request
        self.source = str(request.plan.path) if request.plan is not None else None
        self.problems: list[str] = []
        self._lanes: dict[AgentSpec, Lane | AiswitchError] = {}
        self._ids: dict[str, str] = {}
        self._numbers: Counter[str] = Counter()
        self._candidates: dict[str, tuple[Lane, ...]] = {}
        self._advertised: dict[str, list[str]] | None = None

    # -- lanes ---------------------------------------------------------------------

    def try_lane(self, spec: AgentSpec) -> Lane | AiswitchError:
        found = self._lanes.get(spec)
        if found is None:
            try:
                found = self.coordinator.lane(spec)
            except AiswitchError as exc:
                if self.source is None:
                    raise
                found = exc
            self._lanes[spec] = found
        return found

    def lane(self, spec: AgentSpec, where: str) -> Lane | None:
        found = self.try_lane(spec)
        if isinstance(found, AiswitchError):
            self.problems.append(f"{where}: {spec}: {found.one_line()}")
            return None
        return found

    def agent_id(self, lane: Lane) -> str:
        """One id per lane of a plan (`NAME#N`, numbered per agent name)."""
        agent_id = self._ids.get(lane.key)
        if agent_id is None:
            name = lane.agent.name
            self._numbers[name] += 1
            agent_id = self._ids[lane.key] = f"{name}#{self._numbers[name]}"
        return agent_id

    def candidates(self, capability: str, where: str) -> tuple[Lane, ...]:
        found = self._candidates.get(capability)
        if found is not None:
            return found
        registry = self.coordinator.registry
        if self._advertised is None:
            from aiswitch.coordinator.capability_cache import advertised

            self._advertised = advertised(self.coordinator.store)
        names = [
            name
            for name, agent in registry.agents.items()
            if capability in agent.capabilities or capability in self._advertised.get(name, ())
        ]
        lanes: list[Lane] = []
        reasons: list[str] = []
        for name in names:
            lane = self.try_lane(AgentSpec(name))
            if isinstance(lane, AiswitchError):
                reasons.append(lane.message)
            else:
                lanes.append(lane)
        if not names:
            self.problems.append(
                f"{where}: no agent has capability {capability!r} (list it under an agent's "
                f"`capabilities:` in config/agents.yaml)"
            )
        elif not lanes:
            self.problems.append(
                f"{where}: no agent with capability {capability!r} can run here "
                f"({'; '.join(reasons)})"
            )
        self._candidates[capability] = found = tuple(lanes)
        return found

    # -- tasks ---------------------------------------------------------------------

    def build(self, specs: list[TaskSpec]) -> Plan:
        request = self.request
        plan = request.plan is not None
        keep_prompt = plan or request.batch is not None
        index_of = {s.id: n for n, s in enumerate(specs, start=1) if plan and s.id}
        tasks: list[Task] = []
        for index, spec in enumerate(specs, start=1):
            where = f"{self.source}: task {spec.group or spec.id!r}"
            fallback = tuple(
                lane for lane in (self._fallback(f, where) for f in spec.fallback) if lane
            )
            candidates: tuple[Lane, ...] = ()
            if spec.capability is not None:
                candidates = self.candidates(spec.capability, where)
                lane = candidates[0] if candidates else None
            else:
                assert spec.agent is not None
                lane = self._own_lane(spec.agent, fallback, where)
            if lane is None:
                continue
            # Its own lane is numbered first, then the places it may move to.
            own_id = spec.agent_id or self.agent_id(lane)
            for other in (*candidates, *fallback):
                self.agent_id(other)
            depends = tuple(
                int(d[1:]) if d.startswith("#") else index_of[d]
                for d in spec.depends_on
                if d.startswith("#") or d in index_of
            )
            result = AgentResult(
                agent=lane.agent.name,
                agent_id=own_id,
                preset=lane.preset.name,
                task_id=str(index),
                id=spec.id,
                prompt=spec.prompt if keep_prompt else None,
                priority=spec.priority,
                options=spec.options,
                depends_on=list(spec.depends_on) if plan else [],
            )
            tasks.append(
                Task(
                    index=index,
                    lane=lane,
                    result=result,
                    prompt=spec.prompt,
                    priority=spec.priority,
                    timeout_s=spec.timeout_s,
                    options=spec.options,
                    depends_on=depends,
                    retries=spec.retries,
                    continue_on_failure=spec.continue_on_failure,
                    cwd=spec.cwd,
                    workspace=spec.workspace,
                    budget_usd=spec.budget_usd,
                    capability=spec.capability,
                    candidates=candidates,
                    fallback=fallback,
                    template=plan and PLACEHOLDER.search(spec.prompt or "") is not None,
                )
            )
        problems = (request.plan.problems if request.plan is not None else []) + self.problems
        if problems:
            # A fanned task's copies share their problems: each is said once.
            raise PlanError(list(dict.fromkeys(problems)))
        return Plan(request, tasks, agent_ids=dict(self._ids))

    def _fallback(self, spec: AgentSpec, where: str) -> Lane | None:
        """A fallback lane; one over its quota is passed over, not an error."""
        found = self.try_lane(spec)
        if isinstance(found, QuotaExceededError):
            return None
        return self.lane(spec, where)

    def _own_lane(self, spec: AgentSpec, fallback: tuple[Lane, ...], where: str) -> Lane | None:
        found = self.try_lane(spec)
        if isinstance(found, QuotaExceededError) and fallback:
            return fallback[0]
        if isinstance(found, AiswitchError):
            self.problems.append(f"{where}: {spec}: {found.one_line()}")
            return None
        return found
