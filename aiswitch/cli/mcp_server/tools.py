"""The tools `aiswitch mcp` offers: their argument models (whose JSON Schemas are the tools'
input schemas), output schemas, descriptions, and the shared functions each one calls.

Contract:
- Each tool's arguments are a pydantic model that forbids unknown fields; its JSON
  Schema is the tool's `inputSchema`. Arguments that do not fit are a tool error (one
  sentence naming the argument), never a protocol error.
- Each tool returns a JSON object that fits its `outputSchema` (the `structuredContent`)
  and a short text for the model. `run` and `run_result` return the very document
  `aiswitch run --json` prints (`RunResult.json_document()`, docs/run-json.md, which holds
  the run id); `compare`, `diff`, `apply` and `tokens_report` call the functions
  `aiswitch compare --json`, `diff`, `apply` and `tokens report --json` call.
- Runs are the session's (`session.Session`): this module builds their requests and
  presents their results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiswitch.cli.mcp_server.limits import McpToolError

if TYPE_CHECKING:
    from collections.abc import Callable

# A diff is cut at this size (UTF-8 bytes, per call): a model's context is precious.
DIFF_LIMIT_BYTES = 100_000
# Each agent's output in a tool's text is cut at this many characters (the whole output is
# in structuredContent).
TEXT_OUTPUT_CHARS = 8_000
# `run_result`'s `wait_s` is capped so a call stays within any client's tool timeout.
MAX_WAIT_S = 600.0


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunArgs(_Args):
    task: str = Field(description="What the agents should do, as you would ask them.")
    agents: list[str] = Field(
        min_length=1,
        description='Agents as NAME or NAME@PRESET, e.g. ["codex", "gemini@kimi"]. '
        "The `agents` tool lists what can be used.",
    )
    mode: Literal["parallel", "sequential"] = Field(
        "parallel",
        description="parallel: every agent gets the task at once (to compare attempts); "
        "sequential: each gets the previous one's output (write, then review).",
    )
    workspace: Literal["worktree", "copy", "shared"] | None = Field(
        None,
        description="Where each agent works: its own git worktree, a copy of the folder, or "
        "the folder itself. Default: a worktree in a git repository (review it with diff, "
        "take it with apply), else the folder itself.",
    )
    timeout: float | None = Field(None, description="Seconds each agent may take.")
    budget_usd: float | None = Field(None, description="Stop the run when it costs this much.")
    check: str | None = Field(
        None, description="A shell command run in each workspace afterwards, e.g. 'pytest -q'."
    )
    permissions: Literal["read-only", "edit", "full"] | None = Field(
        None, description="What the agents may do; default: the server's cap."
    )
    cwd: str | None = Field(None, description="The folder to work in; default: the server's.")


class RunIdArgs(_Args):
    run_id: str = Field(description="The run id a run or run_start call returned.")


class RunResultArgs(RunIdArgs):
    wait_s: float = Field(
        0.0,
        ge=0,
        le=MAX_WAIT_S,
        description="Wait up to this many seconds for a running run to end.",
    )


class NoArgs(_Args):
    pass


class DiffArgs(RunIdArgs):
    agent_id: str | None = Field(
        None, description="One agent's changes (e.g. codex#1); default: every agent's."
    )


class ApplyArgs(RunIdArgs):
    agent_id: str = Field(description="The agent whose changes to bring in, e.g. codex#1.")
    how: Literal["patch", "merge", "cherry-pick"] = Field(
        "patch", description="patch: uncommitted changes; merge or cherry-pick: commits."
    )
    keep: bool = Field(False, description="Keep the run's workspaces afterwards.")


class TokensReportArgs(_Args):
    by: str = Field(
        "day",
        description="Grouping: day, week, month, agent, preset, model, provider, run, "
        "session, host, branch, caller; several: 'day,agent'.",
    )
    since: str | None = Field(None, description="First day, YYYY-MM-DD or YYYYMMDD.")
    until: str | None = Field(None, description="Last day, YYYY-MM-DD or YYYYMMDD.")
    agents: list[str] | None = Field(None, description="Only these agents.")
    presets: list[str] | None = Field(None, description="Only these presets.")
    runs: list[str] | None = Field(None, description="Only these runs.")
    timezone: str | None = Field(None, description="IANA zone for days (default: local).")


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


_STR = {"type": "string"}
_NULLABLE_STR = {"type": ["string", "null"]}
_RUN_STATUS = _object(
    {
        "run_id": _STR,
        "status": _STR,
        "finished": {"type": "integer"},
        "tasks": {
            "type": "array",
            "items": _object(
                {
                    "agent_id": _STR,
                    "task_id": _STR,
                    "status": _STR,
                    "attempts": {"type": "integer"},
                },
                ["agent_id", "task_id", "status"],
            ),
        },
        "total_tokens": {"type": "integer"},
        "cost_usd": {"type": ["number", "null"]},
    },
    ["run_id", "status"],
)


def _run_schema() -> dict[str, Any]:
    from aiswitch.coordinator.results import RunResult

    return RunResult.model_json_schema(mode="serialization")


def _agents_schema() -> dict[str, Any]:
    agent = _object(
        {
            "name": _STR,
            "description": _STR,
            "cli": _NULLABLE_STR,
            "model": _NULLABLE_STR,
            "installed": {"type": "boolean"},
            "why_not": _NULLABLE_STR,
            "capabilities": {"type": "array", "items": _STR},
            "allowed": {"type": "boolean"},
        },
        ["name", "installed"],
    )
    preset = _object(
        {
            "name": _STR,
            "agent": _NULLABLE_STR,
            "model": _NULLABLE_STR,
            "description": _STR,
            "tags": {"type": "array", "items": _STR},
            "billing": _NULLABLE_STR,
        },
        ["name"],
    )
    return _object(
        {
            "agents": {"type": "array", "items": agent},
            "presets": {"type": "array", "items": preset},
            "max_permissions": _STR,
            "budget_usd_left": {"type": ["number", "null"]},
        },
        ["agents", "presets"],
    )


def _diff_schema() -> dict[str, Any]:
    item = _object(
        {
            "agent_id": _STR,
            "branch": _NULLABLE_STR,
            "diff": _STR,
            "bytes": {"type": "integer"},
            "truncated": {"type": "boolean"},
        },
        ["agent_id", "diff", "truncated"],
    )
    return _object(
        {"run_id": _STR, "diffs": {"type": "array", "items": item}, "note": _NULLABLE_STR},
        ["run_id", "diffs"],
    )


def _compare_schema() -> dict[str, Any]:
    row = _object(
        {
            "rank": {"type": "integer"},
            "agent_id": _STR,
            "task_id": _STR,
            "status": _STR,
            "check": _NULLABLE_STR,
            "files": {"type": ["integer", "null"]},
            "insertions": {"type": ["integer", "null"]},
            "deletions": {"type": ["integer", "null"]},
            "total_tokens": {"type": "integer"},
            "cost_usd": {"type": ["number", "null"]},
            "duration_s": {"type": "number"},
        },
        ["rank", "agent_id", "status"],
    )
    return _object(
        {"run_id": _STR, "status": _STR, "agents": {"type": "array", "items": row}},
        ["run_id", "status", "agents"],
    )


def _apply_schema() -> dict[str, Any]:
    return _object(
        {
            "run_id": _STR,
            "agent_id": _STR,
            "files": {"type": "integer"},
            "target": _STR,
            "how": _STR,
            "removed_workspaces": {"type": "integer"},
        },
        ["run_id", "agent_id", "files", "how"],
    )


def _report_schema() -> dict[str, Any]:
    return _object(
        {
            "rows": {"type": "array", "items": {"type": "object"}},
            "totals": {"type": "object"},
            "warnings": {"type": "array", "items": _STR},
        },
        ["rows", "totals"],
    )


@dataclass(frozen=True)
class ToolDef:
    name: str
    title: str
    description: str
    args: type[_Args]
    output: Callable[[], dict[str, Any]]
    read_only: bool
    # The session's method that does it: (arguments) -> (structured, text).
    method: str


TOOLS: tuple[ToolDef, ...] = (
    ToolDef(
        "run",
        "Run a task on other agents",
        "Give a task to one or more other coding agents (codex, claude, gemini, … with a "
        "provider preset each) and wait for their results: each agent's status, output, "
        "error, token usage, cost, duration, session id and files changed. Several agents "
        "in parallel work in separate git worktrees, so their attempts can be compared "
        "(`compare`), inspected (`diff`) and one applied (`apply`). For long tasks use "
        "run_start instead.",
        RunArgs,
        _run_schema,
        False,
        "tool_run",
    ),
    ToolDef(
        "run_start",
        "Start a run without waiting",
        "Start the same run as `run` but return its run id at once; follow it with "
        "run_status and collect it with run_result. Use it for tasks that take longer "
        "than your tool-call timeout.",
        RunArgs,
        lambda: _object({"run_id": _STR, "status": _STR}, ["run_id", "status"]),
        False,
        "tool_run_start",
    ),
    ToolDef(
        "run_status",
        "Status of a run",
        "Where a run stands: its status and each agent's (pending, running, ok, failed…).",
        RunIdArgs,
        lambda: _RUN_STATUS,
        True,
        "tool_run_status",
    ),
    ToolDef(
        "run_result",
        "Result of a run",
        "The full result of a run that ended (what `run` returns); wait_s waits for a "
        "running one. A run still running after that is an error saying so.",
        RunResultArgs,
        _run_schema,
        True,
        "tool_run_result",
    ),
    ToolDef(
        "run_cancel",
        "Cancel a run",
        "Cancel a run this server started: its agents are stopped, finished results kept.",
        RunIdArgs,
        lambda: _object({"run_id": _STR, "status": _STR}, ["run_id", "status"]),
        False,
        "tool_run_cancel",
    ),
    ToolDef(
        "agents",
        "Agents and presets available",
        "The agents (and provider presets) that can be used in `run` here: names, models, "
        "capabilities, whether each CLI is installed and allowed by this server.",
        NoArgs,
        _agents_schema,
        True,
        "tool_agents",
    ),
    ToolDef(
        "diff",
        "What an agent changed",
        "The unified diff of one agent's changes in a run (or every agent's), against "
        f"the commit its workspace started from; cut at {DIFF_LIMIT_BYTES:,} bytes.",
        DiffArgs,
        _diff_schema,
        True,
        "tool_diff",
    ),
    ToolDef(
        "compare",
        "Rank a run's agents",
        "A run's agents best first: status, check result, files and lines changed, "
        "tokens, cost and time. Use it to pick which attempt to apply.",
        RunIdArgs,
        _compare_schema,
        True,
        "tool_compare",
    ),
    ToolDef(
        "apply",
        "Apply an agent's changes",
        "Bring one agent's changes from its workspace into the working tree (all or "
        "nothing), then remove the run's workspaces unless keep is true.",
        ApplyArgs,
        _apply_schema,
        False,
        "tool_apply",
    ),
    ToolDef(
        "tokens_report",
        "Token usage report",
        "Tokens and cost spent, grouped by day, agent, preset, model, run, caller…, with "
        "totals (what `aiswitch tokens report --json` prints).",
        TokensReportArgs,
        _report_schema,
        True,
        "tool_tokens_report",
    ),
)
BY_NAME = {tool.name: tool for tool in TOOLS}


def parse_args(tool: ToolDef, arguments: dict[str, Any] | None) -> Any:
    """The tool's arguments as its model, or an `McpToolError` naming what is wrong."""
    try:
        return tool.args.model_validate(arguments or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "arguments"
        raise McpToolError(f"argument {where}: {first['msg']}") from None


def listing(allow_apply: bool) -> list[dict[str, Any]]:
    """The tools as `tools/list` gives them (`apply` only with --allow-apply)."""
    import mcp_types

    from aiswitch.cli.mcp_server.wire import dump

    out = []
    for tool in TOOLS:
        if tool.name == "apply" and not allow_apply:
            continue
        schema = tool.args.model_json_schema()
        schema.pop("title", None)
        model = mcp_types.Tool(
            name=tool.name,
            title=tool.title,
            description=tool.description,
            input_schema=schema,
            output_schema=tool.output(),
            annotations=mcp_types.ToolAnnotations(
                title=tool.title,
                read_only_hint=tool.read_only,
                destructive_hint=False if tool.read_only else tool.name == "apply",
                open_world_hint=tool.name in ("run", "run_start"),
            ),
        )
        out.append(dump(model))
    return out


# -- presenting ---------------------------------------------------------------------------


def run_text(document: dict[str, Any]) -> str:
    """A run's result for the model to read: a line per agent, then its output."""
    lines = [f"run {document['run_id']}: {document['status']}"]
    for result in document.get("results", []):
        usage = result.get("usage") or {}
        tokens = sum(
            usage.get(k, 0)
            for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
        )
        cost = result.get("cost_usd")
        head = (
            f"\n== {result['agent_id']}: {result['status']}, {result.get('duration_s', 0):.1f}s, "
            f"{tokens:,} tokens" + (f", ${cost:.4f}" if cost is not None else "")
        )
        ws = result.get("workspace") or {}
        changes = ws.get("changes")
        if changes:
            head += f", {changes['files']} files +{changes['insertions']} -{changes['deletions']}"
        lines.append(head + " ==")
        text = result.get("output") or result.get("error") or ""
        if len(text) > TEXT_OUTPUT_CHARS:
            text = text[:TEXT_OUTPUT_CHARS] + "\n[… cut; the whole output is in the result]"
        lines.append(text)
    return "\n".join(lines)


def status_of(document: dict[str, Any]) -> dict[str, Any]:
    """`run_status`'s answer from a run document (live or recorded)."""
    results = document.get("results", [])
    final = {"ok", "failed", "timeout", "cancelled", "skipped"}
    tokens = 0
    for r in results:
        usage = r.get("usage") or {}
        tokens += sum(
            usage.get(k, 0)
            for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
        )
    return {
        "run_id": document["run_id"],
        "status": document["status"],
        "finished": sum(1 for r in results if r["status"] in final),
        "tasks": [
            {
                "agent_id": r["agent_id"],
                "task_id": r["task_id"],
                "status": r["status"],
                "attempts": r.get("attempts", 0),
            }
            for r in results
        ],
        "total_tokens": tokens,
        "cost_usd": document.get("cost_usd"),
    }


def status_text(status: dict[str, Any]) -> str:
    tasks = ", ".join(f"{t['agent_id']} {t['status']}" for t in status["tasks"])
    return (
        f"run {status['run_id']}: {status['status']} "
        f"({status['finished']}/{len(status['tasks'])} finished: {tasks})"
    )


def cut_diff(data: bytes, budget: int) -> tuple[str, bool]:
    """`data` as text within `budget` bytes (cut at a line end), and whether it was cut."""
    if len(data) <= budget:
        return data.decode("utf-8", errors="replace"), False
    head = data[:budget]
    end = head.rfind(b"\n")
    if end > 0:
        head = head[: end + 1]
    return head.decode("utf-8", errors="replace"), True
