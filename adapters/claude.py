"""The `claude` agent: Claude Code run headless, one `claude -p` per task.

    claude -p --input-format stream-json --output-format stream-json --verbose
           --permission-mode MODE [--model M] [--max-turns N] [--system-prompt S |
           --append-system-prompt S] [--allowedTools T,…] [--disallowedTools T,…]
           [--resume SESSION_ID] [EXTRA_ARGS…]          (the prompt arrives on stdin)

Contract (docs/agents.md has the tables):
- Progress: assistant text, thinking, tool calls and tool results, API retries and
  permission denials become `task.progress`.
- Live usage: each `assistant` event's usage (claude's snapshot at the message's start)
  adds to the task's running totals, sent as `task.progress` `usage` when they change:
  provisional, shown while the task runs, never recorded.
- Usage: one `tokens.usage` per API request, with claude's message id and request id, read
  from claude's own session log (`projects/*/<session>.jsonl` under the config dir) once
  claude has exited, when the log's requests of this task (the ids its `assistant` events
  named) add up to the final `result` event's usage; each model's cost (`modelUsage`) is
  shared among its requests by tokens. Otherwise the `result` alone counts (the `usage` on
  `assistant` events is a partial snapshot): one `tokens.usage` per model in `modelUsage`
  with that model's own cost, or one with `usage` and `total_cost_usd` without a breakdown.
- The task fails with claude's own message on an API error (`is_error`, which claude
  reports with `subtype: "success"`; its `api_error_status`, e.g. 429, is the result's
  `provider_status`), on max turns, on a non-zero exit, or when claude exits before its
  result (then with its last stderr line).
- The session id is the outcome's `session_id`; `params.session_id` resumes it
  (`--resume`, same cwd and same CLAUDE_CONFIG_DIR, which `preset_home` keeps stable).
- The environment: CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 always (no telemetry, no
  update checks), CLAUDE_CODE_MAX_RETRIES from the `max_retries` option unless the
  environment sets it, CLAUDE_CONFIG_DIR per API-key preset, IS_SANDBOX=1 when root
  runs with `full` permissions (claude refuses bypassPermissions as root otherwise).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from aiswitch.adapter_sdk import TaskContext, TaskFailed, TaskOutcome, serve
from aiswitch.tokens.usage import Usage

from ._common import (
    CliAdapter,
    CliSpec,
    Permission,
    apply_home,
    int_option,
    list_option,
    permission_flags,
    permission_level,
    provider_name,
    session_id,
    short,
    str_option,
)
from ._drive import (
    Exit,
    Progress,
    Report,
    RunningUsage,
    drive,
    exit_failure,
)
from ._usage import UsageReport, UsageTotals, accounts_for, reports_from_rows

SPEC: Final = CliSpec(
    name="claude",
    package="@anthropic-ai/claude-code",
    # The oldest version tested: stream-json input, `dontAsk` and the result event's
    # modelUsage/api_error_status are what this adapter relies on.
    min_version="2.1.197",
    tested_version="2.1.197",
)
CONFIG_DIR_VAR: Final = "CLAUDE_CONFIG_DIR"
# Claude tags a model id with its context window ("claude-opus-4-8[1m]"); the price
# table files models without it.
_CONTEXT_TAG = re.compile(r"\[[^\]]*\]\Z")
# The model of the messages claude makes up itself (API errors): never usage.
SYNTHETIC_MODEL: Final = "<synthetic>"

log = logging.getLogger("aiswitch.adapter.claude")


def clean_model(model: str) -> str:
    return _CONTEXT_TAG.sub("", model)


def _usage_of_model(entry: dict[str, Any]) -> Usage:
    return Usage.from_anthropic(
        {
            "input_tokens": entry.get("inputTokens"),
            "output_tokens": entry.get("outputTokens"),
            "cache_read_input_tokens": entry.get("cacheReadInputTokens"),
            "cache_creation_input_tokens": entry.get("cacheCreationInputTokens"),
        }
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class ClaudeTranslator:
    """claude's stream-json events → progress, usage and the task's outcome."""

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.model: str | None = None
        self.result: dict[str, Any] | None = None
        self.totals = UsageTotals()
        self.messages: list[tuple[str | None, str | None]] = []
        # The API requests seen (distinct message ids), per model: what a usage sum covers.
        self.requests: dict[str | None, int] = {}
        self.last_text = ""
        # The usage each `assistant` event showed, by message: the running totals.
        self.shown: dict[str | None, Usage] = {}

    def feed(self, event: dict[str, Any]) -> list[Report]:
        session = event.get("session_id")
        if isinstance(session, str) and session:
            self.session_id = session
        kind = event.get("type")
        if kind == "system":
            return self._system(event)
        if kind == "assistant":
            return self._assistant(event)
        if kind == "user":
            return self._tool_results(event)
        if kind == "result":
            self.result = event
            return self._result(event)
        return []

    def _system(self, event: dict[str, Any]) -> list[Report]:
        subtype = event.get("subtype")
        if subtype == "init":
            model = event.get("model")
            if isinstance(model, str) and model:
                self.model = clean_model(model)
            return [Progress(f"claude started ({self.model or 'default model'})", "status")]
        if subtype == "api_retry":
            status = event.get("error_status") or event.get("error") or "error"
            attempt, most = event.get("attempt"), event.get("max_retries")
            return [Progress(f"API error {status}; retry {attempt}/{most}", "status")]
        return []

    def _assistant(self, event: dict[str, Any]) -> list[Report]:
        message = event.get("message")
        if not isinstance(message, dict):
            return []
        reports: list[Report] = []
        if message.get("model") != SYNTHETIC_MODEL:
            pair = (message.get("id"), event.get("request_id"))
            if pair not in self.messages:
                self.messages.append(pair)
                model = message.get("model")
                key = clean_model(model) if isinstance(model, str) else None
                self.requests[key] = self.requests.get(key, 0) + 1
            reports += self._running(message)
        for block in message.get("content") or []:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text" and block.get("text"):
                self.last_text = str(block["text"])
                reports.append(Progress(short(self.last_text), "text"))
            elif btype == "thinking" and block.get("thinking"):
                reports.append(Progress(short(str(block["thinking"])), "thinking"))
            elif btype == "tool_use":
                reports.append(Progress(_describe_tool(block), "tool"))
        return reports

    def _running(self, message: dict[str, Any]) -> list[Report]:
        """The running totals, when this message's usage changes them: provisional (a
        message's usage is claude's snapshot at its start; the output grows after)."""
        raw = message.get("usage")
        if not isinstance(raw, dict):
            return []
        usage = Usage.from_anthropic(raw)
        key = message.get("id") if isinstance(message.get("id"), str) else None
        if not usage.total_tokens or self.shown.get(key) == usage:
            return []
        self.shown[key] = usage
        total = Usage()
        for each in self.shown.values():
            total = total + each
        return [RunningUsage(total)]

    def _tool_results(self, event: dict[str, Any]) -> list[Report]:
        message = event.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        reports: list[Report] = []
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                body = block.get("content")
                if isinstance(body, list):
                    body = " ".join(
                        str(part.get("text", "")) for part in body if isinstance(part, dict)
                    )
                prefix = "tool error" if block.get("is_error") else "tool result"
                reports.append(Progress(short(f"{prefix}: {body}"), "tool"))
        return reports

    def _result(self, event: dict[str, Any]) -> list[Report]:
        reports: list[Report] = []
        for denial in event.get("permission_denials") or []:
            if isinstance(denial, dict):
                tool = denial.get("tool_name", "a tool")
                # Headless, claude cannot ask: the user must grant it (--permissions).
                reports.append(Progress(f"permission denied: {tool}", "waiting"))
        for usage_report in self._usage_reports(event):
            self.totals.add(usage_report)
            reports.append(usage_report)
        return reports

    def _usage_reports(self, event: dict[str, Any]) -> list[UsageReport]:
        raw_total = event.get("usage")
        total = Usage.from_anthropic(raw_total) if isinstance(raw_total, dict) else Usage()
        total_cost = _number(event.get("total_cost_usd"))
        per_model: list[UsageReport] = []
        model_usage = event.get("modelUsage")
        if isinstance(model_usage, dict):
            for model, entry in model_usage.items():
                if isinstance(entry, dict):
                    per_model.append(
                        UsageReport(
                            _usage_of_model(entry),
                            model=clean_model(str(model)),
                            cost_usd=_number(entry.get("costUSD")),
                        )
                    )
        summed = Usage()
        for report in per_model:
            summed = summed + report.usage
        # The breakdown is used only when it adds up to the total: the total is what
        # was billed, and the ledger must not count tokens twice or lose any.
        if per_model and summed == total:
            reports = [
                replace(r, requests=self.requests.get(r.model) or 1)
                for r in per_model
                if r.usage.total_tokens or r.cost_usd
            ]
            if len(reports) == 1:  # every request seen is this model's
                reports = [replace(reports[0], requests=max(1, len(self.messages)))]
        elif total.total_tokens or total_cost:
            requests = max(1, len(self.messages))
            reports = [UsageReport(total, model=self.model, cost_usd=total_cost, requests=requests)]
        else:
            reports = []
        if len(reports) == 1 and len(self.messages) == 1:
            # One request, one record: its ids let the ledger deduplicate it.
            message_id, request_id = self.messages[0]
            only = reports[0]
            reports = [
                UsageReport(
                    only.usage,
                    model=only.model,
                    cost_usd=only.cost_usd,
                    message_id=message_id,
                    request_id=request_id,
                )
            ]
        return reports

    def finish(self, end: Exit) -> TaskOutcome:
        result = self.result
        if result is None:
            raise TaskFailed(exit_failure("claude", end))
        text = result.get("result")
        output = text if isinstance(text, str) else self.last_text
        if result.get("is_error") or result.get("subtype") != "success":
            status = result.get("api_error_status")
            raise TaskFailed(
                _error_message(result),
                output="",
                # Typed, so that the parent can fail a 429 or 5xx over to another agent.
                provider_status=status if type(status) is int else None,
            )
        if end.code != 0:
            raise TaskFailed(exit_failure("claude", end), output=output)
        return TaskOutcome(
            output=output,
            usage=self.totals.usage,
            model=self.totals.model or self.model,
            session_id=self.session_id,
            cost_usd=_number(result.get("total_cost_usd")),
        )


def _error_message(result: dict[str, Any]) -> str:
    text = result.get("result")
    errors = [str(e) for e in result.get("errors") or [] if e]
    subtype = str(result.get("subtype") or "error")
    if isinstance(text, str) and text.strip():
        message = text
    elif errors:
        message = "; ".join(errors)
    else:
        message = subtype.replace("_", " ")
    if subtype == "error_max_turns" and "turn" not in message.lower():
        message = f"max turns reached: {message}"
    return f"claude: {message}"


def _describe_tool(block: dict[str, Any]) -> str:
    name = str(block.get("name") or "tool")
    args = block.get("input")
    if isinstance(args, dict):
        for key in ("command", "file_path", "path", "pattern", "url", "description"):
            if args.get(key):
                return short(f"{name}: {args[key]}")
        return short(f"{name}: {json.dumps(args, ensure_ascii=False)}")
    return name


# -- usage per request, from claude's own log -------------------------------------------


def session_rows(env: Mapping[str, str], session: str) -> list[tuple[Any, ...]]:
    """The report rows of one session as claude logged it (deduplicated, models cleaned);
    the ACP adapter reads claude-code-acp's sessions with it too."""
    from aiswitch.tokens.inputs import claude_roots
    from aiswitch.tokens.rows import R_MODEL
    from aiswitch.tokens.sources.claude import (
        dedupe_claude_entries,
        parse_claude_bytes,
        rows_from_entries,
        session_from_path,
    )

    entries: list[tuple[Any, ...]] = []
    for root in claude_roots(env):
        projects = root / "projects"
        paths = [*projects.glob(f"*/{session}.jsonl"), *projects.glob(f"*/{session}/**/*.jsonl")]
        for path in sorted(paths):
            parsed, _malformed = parse_claude_bytes(path.read_bytes(), session_from_path(path))
            entries += parsed
    return [
        (*row[:R_MODEL], clean_model(row[R_MODEL]) if row[R_MODEL] else None, *row[R_MODEL + 1 :])
        for row in rows_from_entries(dedupe_claude_entries(entries))
    ]


def requests_from_log(
    env: dict[str, str], translator: ClaudeTranslator, stream: list[UsageReport]
) -> list[UsageReport] | None:
    """This task's requests as claude logged them (see the module docstring), or None."""
    session = translator.session_id
    wanted = {pair for pair in translator.messages if pair[0] and pair[1]}
    if not session or not wanted:
        return None
    from aiswitch.tokens.rows import R_MESSAGE, R_MODEL, R_REQUEST

    rows = [row for row in session_rows(env, session) if (row[R_MESSAGE], row[R_REQUEST]) in wanted]
    models = {row[R_MODEL] for row in rows}
    if len(stream) == 1 and len(models) == 1:
        # One figure for the task: the log names the model as the provider did.
        costs = {models.pop(): stream[0].cost_usd}
    else:
        costs = {report.model: report.cost_usd for report in stream}
    requests = reports_from_rows(
        rows, {model: cost for model, cost in costs.items() if cost is not None}
    )
    return requests if accounts_for(requests, stream) else None


# -- the command ----------------------------------------------------------------------


def build_argv(cli: str, ctx: TaskContext, level: Permission) -> list[str]:
    argv = [
        cli,
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
        *permission_flags("claude", level),
    ]
    model = str_option(ctx, "model")
    if model:
        argv += ["--model", model]
    max_turns = int_option(ctx, "max_turns")
    if max_turns:
        argv += ["--max-turns", str(max_turns)]
    system_prompt = str_option(ctx, "system_prompt")
    if system_prompt:
        argv += ["--system-prompt", system_prompt]
    append = str_option(ctx, "append_system_prompt")
    if append:
        argv += ["--append-system-prompt", append]
    # One comma-joined value: the options are variadic and would swallow what follows.
    for flag, name in (
        ("--allowedTools", "allowed_tools"),
        ("--disallowedTools", "disallowed_tools"),
    ):
        tools = list_option(ctx, name)
        if tools:
            argv += [flag, ",".join(tools)]
    resume = session_id(ctx, "claude")
    if resume:
        argv += ["--resume", resume]
    argv += list_option(ctx, "extra_args")
    return argv


def build_env(ctx: TaskContext, level: Permission) -> dict[str, str]:
    env = dict(ctx.env)
    # Only the provider: no telemetry, error reports, update checks or feedback calls.
    env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    if "CLAUDE_CODE_MAX_RETRIES" not in env:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(int_option(ctx, "max_retries", 0))
    apply_home(env, "claude", CONFIG_DIR_VAR)
    if level == "full" and hasattr(os, "geteuid") and os.geteuid() == 0:
        env["IS_SANDBOX"] = "1"
    return env


def stdin_message(prompt: str) -> bytes:
    message = {
        "type": "user",
        "message": {"role": "user", "content": [{"type": "text", "text": prompt}]},
    }
    return (json.dumps(message, ensure_ascii=False) + "\n").encode()


class ClaudeAdapter(CliAdapter):
    name = "claude"
    spec = SPEC

    async def run_task(self, ctx: TaskContext) -> TaskOutcome:
        cli = self.located()
        level = permission_level(ctx)
        argv = build_argv(cli.path, ctx, level)
        env = build_env(ctx, level)
        provider = provider_name(env.get("ANTHROPIC_BASE_URL"), "anthropic")
        return await drive(
            ctx,
            argv,
            env,
            ClaudeTranslator(),
            name="claude",
            provider=provider,
            stdin_data=stdin_message(ctx.prompt),
            per_request=lambda translator, stream: requests_from_log(env, translator, stream),
        )


def main() -> None:
    serve(ClaudeAdapter())


if __name__ == "__main__":
    main()
