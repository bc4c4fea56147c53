"""A run's graph without running it (`aiswitch run --dry-run`).

`levels(plan)`: the tasks by level (a task's level is one more than its deepest
dependency's; level 1 has none), each with the agent it would go to now. A capability's
tasks are spread as the scheduler would spread them at the start: each to the candidate
with the fewest tasks so far. `document(plan)` is the `--json` form.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiswitch.coordinator.request import Plan
from aiswitch.coordinator.tasks import Task


def levels(plan: Plan) -> list[list[Task]]:
    depth: dict[int, int] = {}
    by_index = {t.index: t for t in plan.tasks}

    def level(task: Task) -> int:
        # Iterative: a 10,000-step chain must not hit the recursion limit.
        stack = [task]
        while stack:
            top = stack[-1]
            if top.index in depth:
                stack.pop()
                continue
            waiting = [by_index[d] for d in top.depends_on if d not in depth]
            if waiting:
                stack.extend(waiting)
                continue
            depth[top.index] = 1 + max((depth[d] for d in top.depends_on), default=0)
            stack.pop()
        return depth[task.index]

    grouped: dict[int, list[Task]] = {}
    for task in plan.tasks:
        grouped.setdefault(level(task), []).append(task)
    return [sorted(grouped[n], key=lambda t: (-t.priority, t.index)) for n in sorted(grouped)]


def document(plan: Plan) -> dict[str, Any]:
    """The graph as JSON: its levels, each task with where it would run."""
    assigned: Counter[str] = Counter()
    ids = {t.index: t.result.id or t.result.agent_id for t in plan.tasks}
    out: list[list[dict[str, Any]]] = []
    for tasks in levels(plan):
        row = []
        for task in tasks:
            lane = task.lane
            if len(task.candidates) > 1:
                lane = min(task.candidates, key=lambda c: assigned[c.key])
            assigned[lane.key] += 1
            row.append(
                {
                    "id": ids[task.index],
                    "agent": lane.key,
                    "agent_id": plan.agent_ids.get(lane.key, task.result.agent_id),
                    "capability": task.capability,
                    "candidates": [c.key for c in task.candidates],
                    "fallback": [f.key for f in task.fallback],
                    "priority": task.priority,
                    "depends_on": [ids[d] for d in task.depends_on],
                    "continue_on_failure": task.continue_on_failure,
                }
            )
        out.append(row)
    request = plan.request
    name = request.plan.name if request.plan is not None else None
    return {
        "plan": name,
        "mode": request.mode,
        "tasks": len(plan.tasks),
        "levels": out,
    }
