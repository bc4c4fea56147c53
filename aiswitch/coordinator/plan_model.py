"""The plan file's format (`aiswitch run --plan plan.yaml`): the models are the schema.

docs/plans.md documents these fields and docs/plan.schema.json is generated from them
(`python -m aiswitch.coordinator.plan_model > docs/plan.schema.json`); a test fails when
either drifts from the models. Unknown fields are refused (a typo must not be ignored).
Checks that need more than one field or other tasks (dependencies, cycles, placeholders,
agents) are `plan_check`'s.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from aiswitch.factories import new_dict, new_list
from aiswitch.workspace.model import WorkspaceSettings

# A task id: what `{ID.output}` and `depends_on` name. No dots or brackets: a fanned
# task's copies are `ID[N]`, and `{ID[N].output}` must read one way only.
TASK_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")
TASK_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"

Permissions = Literal["read-only", "edit", "full"]
WorkspaceMode = Literal["worktree", "copy", "shared"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanDefaults(_Strict):
    """What every task gets unless it says otherwise."""

    agent: str | None = Field(None, description="`NAME[@PRESET]` for tasks that name none.")
    timeout: float | None = Field(None, gt=0, description="Seconds per task attempt.")
    retries: int | None = Field(
        None, ge=0, description="Attempts after a process death (default 2)."
    )
    permissions: Permissions | None = Field(None, description="What agents may do.")
    budget_usd: float | None = Field(None, gt=0, description="Each task's own cost limit.")
    fallback: list[str] = Field(
        default_factory=new_list,
        description="`NAME[@PRESET]`s to move a task to, in order, when its provider "
        "refuses (429, 5xx, over quota) or its process dies.",
    )
    options: dict[str, Any] = Field(
        default_factory=new_dict, description="Adapter options every task is sent."
    )
    cwd: str | None = Field(None, description="Working directory of every task.")
    workspace: WorkspaceMode | None = Field(
        None, description="Where every task works: worktree, copy or shared (docs/workspaces.md)."
    )


class PlanTask(_Strict):
    """One task of the graph."""

    id: str = Field(pattern=TASK_ID_PATTERN, description="Unique; what others depend on.")
    prompt: str | None = Field(
        None,
        description="The task. `{ID.output}`, `{ID.status}`, `{ID.agent}` of a dependency "
        "and `{item}` (with `for_each`) are replaced literally; other braces stay.",
    )
    prompt_file: str | None = Field(
        None, description="A file holding the prompt (relative to the plan file)."
    )
    agent: str | None = Field(None, description="`NAME[@PRESET]`; not with `capability`.")
    capability: str | None = Field(
        None, description="Run on the least-loaded agent that has this capability."
    )
    priority: int = Field(0, description="Among ready tasks, higher starts first.")
    depends_on: list[str] = Field(
        default_factory=new_list, description="Task ids that must end before this one starts."
    )
    timeout: float | None = Field(None, gt=0, description="Seconds per attempt.")
    retries: int | None = Field(None, ge=0, description="Attempts after a process death.")
    budget_usd: float | None = Field(
        None, gt=0, description="Cancel the task when its cost reaches this."
    )
    options: dict[str, Any] = Field(
        default_factory=new_dict, description="Adapter options (over the defaults')."
    )
    continue_on_failure: bool = Field(
        False, description="Run even when a dependency did not succeed."
    )
    cwd: str | None = Field(None, description="Working directory (relative to the plan file).")
    workspace: WorkspaceMode | None = Field(
        None, description="Where this task works: worktree, copy or shared (docs/workspaces.md)."
    )
    fallback: list[str] | None = Field(
        None, description="Replaces `defaults.fallback` for this task."
    )
    for_each: list[str | int | float] | None = Field(
        None,
        description="One copy of the task per value (`ID[1]`, `ID[2]`, …), `{item}` in "
        "its prompt replaced by the value.",
    )


class PlanFile(_Strict):
    """A plan: a graph of tasks."""

    name: str | None = Field(None, description="Shown in results and the runs list.")
    defaults: PlanDefaults = PlanDefaults()
    concurrency: int | None = Field(None, ge=1, description="Tasks in flight at once.")
    budget_usd: float | None = Field(None, gt=0, description="Stop the plan at this cost.")
    budget_tokens: int | None = Field(None, gt=0, description="Stop the plan at these tokens.")
    tasks: list[PlanTask] = Field(min_length=1)
    workspace: WorkspaceSettings | None = Field(
        None,
        description="Setup, include and symlink for each new workspace (over "
        "config/coordination.yaml's `workspace:`).",
    )


def render_schema() -> str:
    """docs/plan.schema.json."""
    schema = PlanFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "aiswitch plan file"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_schema())
