"""A run's graph: what happens when one of its tasks is ready, and after an attempt that
did not end ok (the scheduler's `prepare` and `reroute` hooks).

Contract:
- `prepare(task)`, when every task it depends on is final: a task whose dependency did
  not end ok is `skipped` (its error says which, and how it ended) unless it has
  `continue_on_failure`; a sequential step gets the hand-off (the task plus the last
  successful step's output, through the handoff template); a plan task's placeholders
  are filled in with its dependencies' results (`placeholders.fill_in`); a capability task
  goes to its least-loaded candidate (`Scheduler.load`).
- `reroute(task, attempt)` after a process death or a provider's refusal: the task moves
  to an agent it has not tried (another with its capability, the least loaded, else the
  next fallback), if there is one; the scheduler then gives it its next attempt there.
- `move(task, lane)` is the one way a task changes lane: its result names the new agent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiswitch.coordinator.placeholders import fill_in
from aiswitch.coordinator.results import AgentResult, TaskStatus
from aiswitch.coordinator.tasks import FAILOVER_ENDS, Attempt, Lane, Task

if TYPE_CHECKING:
    from aiswitch.coordinator.run import Run

log = logging.getLogger("aiswitch.coordinator")

# How a dependency's end reads in a skipped task's error.
_HOW_IT_ENDED = {
    TaskStatus.FAILED: "failed",
    TaskStatus.TIMEOUT: "timed out",
    TaskStatus.CANCELLED: "was cancelled",
    TaskStatus.SKIPPED: "was skipped",
}


class TaskGraph:
    def __init__(self, run: Run) -> None:
        self.run = run
        self._ids: dict[str, list[AgentResult]] | None = None

    def prepare(self, task: Task) -> bool:
        """When `task` is ready: skipped if a dependency failed (unless it goes on after
        failures), its prompt filled in, its lane chosen (a capability's least loaded)."""
        if task.depends_on and not task.continue_on_failure:
            for index in task.depends_on:
                dependency = self.run.tasks[index - 1].result
                if dependency.status != TaskStatus.OK:
                    task.result.status = TaskStatus.SKIPPED
                    task.result.error = (
                        f"skipped: dependency {dependency.id or dependency.task_id} "
                        f"{_HOW_IT_ENDED.get(dependency.status, dependency.status)}"
                    )
                    return False
        if task.prompt is None:
            self.hand_off(task)
        elif task.template:
            task.prompt = task.result.prompt = fill_in(task.prompt, self.by_id())
        if len(task.candidates) > 1 and self.run.scheduler is not None:
            self.move(task, min(task.candidates, key=self.run.scheduler.load))
        return True

    def hand_off(self, task: Task) -> None:
        # A sequential step: the task, plus the last successful step's output.
        request = self.run.request
        previous = next(
            (
                t.result
                for t in reversed(self.run.tasks[: task.index - 1])
                if t.result.status == "ok"
            ),
            None,
        )
        if previous is None:
            task.prompt = request.prompt
        else:
            task.prompt = (
                request.handoff_template.replace("{previous_output}", previous.output)
                .replace("{previous_agent}", previous.agent_id)
                .replace("{task}", request.prompt)
            )

    def by_id(self) -> dict[str, list[AgentResult]]:
        """A plan's results by task id, and a fanned task's copies by the task's own id."""
        if self._ids is None:
            self._ids = {}
            for task in self.run.tasks:
                task_id = task.result.id
                if task_id is None:
                    continue
                self._ids.setdefault(task_id, []).append(task.result)
                group, bracket, _ = task_id.partition("[")
                if bracket:
                    self._ids.setdefault(group, []).append(task.result)
        return self._ids

    def move(self, task: Task, lane: Lane) -> None:
        """`task`'s next attempt runs on `lane` (routing, failover)."""
        if lane is task.lane:
            return
        task.lane = lane
        result = task.result
        result.agent, result.preset = lane.agent.name, lane.preset.name
        result.agent_id = self.run.plan.agent_ids.get(lane.key, result.agent_id)

    def reroute(self, task: Task, attempt: Attempt) -> bool:
        """After a process death or a provider's refusal: the task moves to an agent it
        has not tried (another with its capability, the least loaded, else the next
        fallback), if there is one."""
        if attempt.end not in FAILOVER_ENDS or not (task.candidates or task.fallback):
            return False
        tried = {a.lane for a in task.attempts}
        others = [lane for lane in task.candidates if lane.key not in tried]
        chosen: Lane | None = None
        if others and self.run.scheduler is not None:
            chosen = min(others, key=self.run.scheduler.load)
        else:
            chosen = next((lane for lane in task.fallback if lane.key not in tried), None)
        if chosen is None:
            return False
        log.info(
            "%s: attempt %s ended %s on %s; the next goes to %s",
            task.result.id or task.id,
            attempt.id,
            attempt.end,
            attempt.lane,
            chosen.key,
        )
        self.move(task, chosen)
        return True
