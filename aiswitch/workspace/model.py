"""The workspace layer's shapes: settings, the record of a workspace, its changes, its check.

`Workspace` is what a task's result carries (`AgentResult.workspace`, the `--json`
document) and what `workspaces/<run>/<name>.json` holds, one shape for both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aiswitch.factories import new_list

Mode = Literal["worktree", "copy", "shared"]
MODES: tuple[Mode, ...] = ("worktree", "copy", "shared")


class WorkspaceSettings(BaseModel):
    """`workspace:` in config/coordination.yaml: what each new workspace gets."""

    # Built on first use: a run in the user's tree (the default outside git) needs none.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    setup: list[str] = Field(
        default_factory=new_list, description="Shell commands run in each new workspace, in order."
    )
    include: list[str] = Field(
        default_factory=new_list, description="Ignored files copied in (`.env`, local config)."
    )
    symlink: list[str] = Field(
        default_factory=new_list,
        description="Big folders linked instead of copied (`node_modules`).",
    )

    @field_validator("include", "symlink")
    @classmethod
    def _relative(cls, paths: list[str]) -> list[str]:
        for path in paths:
            parts = Path(path).parts
            if not path or Path(path).is_absolute() or ".." in parts:
                raise ValueError(f"{path!r} must be a path inside the project")
        return paths


def load_settings(config_dir: Path) -> WorkspaceSettings:
    """The `workspace:` section of `config_dir/coordination.yaml` (empty when absent)."""
    from aiswitch.agents import coordination_section

    return coordination_section(config_dir, "workspace", WorkspaceSettings)


class Changes(BaseModel):
    """What a task changed in its workspace, against the base recorded at its creation."""

    files: int = 0
    insertions: int = 0
    deletions: int = 0
    paths: list[str] = Field(default_factory=new_list, description="The files changed.")
    stat: str = Field("", description="`git diff --stat` of base..branch.")


class CheckResult(BaseModel):
    """`--check`: the command run in the workspace after its agent finished."""

    command: str
    passed: bool
    exit_code: int | None = Field(None, description="None when it was killed (timeout).")
    tail: str = Field("", description="The last lines of its output.")
    duration_s: float = 0.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class Workspace(BaseModel):
    """One task's workspace."""

    model_config = ConfigDict(extra="ignore")

    mode: Mode
    run_id: str
    name: str = Field(description="Unique within the run: the agent id as a path segment.")
    agent_id: str = ""
    task_id: str = ""
    root: str = Field(description="The workspace's top directory (a worktree, a copy, or yours).")
    cwd: str = Field(description="Where the agent runs: the subdirectory you ran from, in it.")
    source: str = Field(description="The directory it was made from (a repository's top).")
    branch: str | None = None
    base: str | None = Field(None, description="The commit every diff is taken against.")
    tip: str | None = Field(
        None, description="Where its changes end: the branch's commit when the task ended."
    )
    created_at: datetime = Field(default_factory=utc_now)
    changes: Changes | None = None
    check: CheckResult | None = None
    applied: str | None = Field(None, description="How it was applied (patch, merge, …).")
    excluded: list[str] = Field(
        default_factory=new_list, description="Included and linked paths, never part of a diff."
    )

    @property
    def isolated(self) -> bool:
        return self.mode != "shared"
