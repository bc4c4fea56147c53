"""The `codex` agent: the OpenAI Codex CLI run headless, one `codex exec` per task.

    codex exec --json --skip-git-repo-check --disable plugins -c analytics.enabled=false
               PERMISSION_FLAGS [PROVIDER_FLAGS] [-m MODEL] [EXTRA_ARGS…]
               [resume THREAD_ID] -                       (the prompt arrives on stdin)

Contract (docs/agents.md has the tables):
- Provider: when OPENAI_BASE_URL is set, codex gets a custom provider named `aiswitch`
  (`-c model_provider=aiswitch -c model_providers.aiswitch.base_url=$OPENAI_BASE_URL
  -c model_providers.aiswitch.env_key=OPENAI_API_KEY -c …wire_api=responses`, plus its
  retry knobs), because codex's built-in provider ignores OPENAI_BASE_URL. When it is
  unset, codex uses its own provider and login.
- Progress: agent messages, reasoning, commands, file changes, tool calls and non-fatal
  errors become `task.progress`.
- Usage: one `tokens.usage` per API request of the turn, read from codex's rollout
  (`sessions/…/rollout-*-<thread>.jsonl`: the last turn's `token_count` events, each
  request's `last_token_usage`) once codex has exited, with the ids `tokens report --source
  codex` gives them (message id = turn id, request id = `<turn id>:<n>`). Without a
  readable rollout, one per `turn.completed` (OpenAI shape, cached tokens inside
  `input_tokens`: normalised) — which after `resume` is the whole thread's running total,
  not the turn's: the rollout is what makes a resumed turn count once. The model is
  `-m`/OPENAI_MODEL when given, else the one codex recorded in its session file.
- `turn.failed`, a non-zero exit, or an exit without `turn.completed` fail the task with
  codex's own message (the `error` event's text, else its last stderr line).
- The thread id is the outcome's `session_id`; `params.session_id` continues it with
  `codex exec … resume <id>` (same CODEX_HOME, which `preset_home` keeps stable).
- CODEX_HOME is per API-key preset and created when missing (codex requires it to exist).
- Refusals: `codex exec` never waits for an approval (0.169.0 runs with approval policy
  `never` even when given `on-request`): what its sandbox or policy refuses goes back to
  the model as the tool's output, and its `--json` stream shows nothing of a refused
  patch or escalation, and of a command the sandbox refused only sometimes (an item with
  its exit code in some runs, nothing in others). Once codex has exited, the last turn of
  its rollout is read (`refusals`): a call whose output is codex's refusal (an
  `apply_patch` "patch rejected: …", an escalation "reject command", or a command that
  failed inside the sandbox with the words codex takes for a sandbox denial) becomes one
  `task.progress` of kind `waiting`, `permission denied: WHAT (WHY)`: the user's to lift
  (`--permissions`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from aiswitch.adapter_sdk import TaskContext, TaskFailed, TaskOutcome, serve
from aiswitch.tokens.usage import COUNTERS, Usage

from ._common import (
    CliAdapter,
    CliSpec,
    Permission,
    apply_home,
    int_option,
    list_option,
    permission_flag,
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
    drive,
    exit_failure,
)
from ._usage import UsageReport, UsageTotals, reports_from_rows, sum_usage

SPEC: Final = CliSpec(
    name="codex",
    package="@openai/codex",
    # The oldest version tested: `--disable plugins`, `exec resume` and the
    # turn.completed usage fields are what this adapter relies on.
    min_version="0.169.0",
    tested_version="0.169.0",
)
HOME_VAR: Final = "CODEX_HOME"
BASE_URL_VAR: Final = "OPENAI_BASE_URL"
KEY_VAR: Final = "OPENAI_API_KEY"
MODEL_VAR: Final = "OPENAI_MODEL"
# The id of the custom provider entry aiswitch adds to codex's config.
PROVIDER_ID: Final = "aiswitch"
# Reading codex's session file for the model stops after this many bytes: the model is in
# its first turn_context record, near the top.
SESSION_SCAN_BYTES: Final = 1024 * 1024

log = logging.getLogger("aiswitch.adapter.codex")

ModelLookup = Callable[[str], str | None]


def normalise_usage(raw: dict[str, Any]) -> Usage:
    """codex's turn usage: `input_tokens` includes the cached (and cache-written) tokens."""
    base = Usage.from_openai(raw)
    cache_write = raw.get("cache_write_input_tokens")
    written = cache_write if isinstance(cache_write, int) and cache_write > 0 else 0
    return Usage(
        input_tokens=max(base.input_tokens - written, 0),
        output_tokens=base.output_tokens,
        cache_read_tokens=base.cache_read_tokens,
        cache_write_tokens=written,
        reasoning_tokens=base.reasoning_tokens,
    )


# codex's events carry a refused request's HTTP status only in their text: "exceeded retry
# limit, last status: 429 Too Many Requests" (codex 0.169.0, `turn.failed` and `error`).
_LAST_STATUS: Final = re.compile(r"\blast status: ([1-5][0-9][0-9])\b")


def provider_status(message: str) -> int | None:
    """The HTTP status codex says the provider last refused with, if it says one."""
    found = _LAST_STATUS.search(message)
    return int(found.group(1)) if found else None


class CodexTranslator:
    """codex exec --json events → progress, usage and the task's outcome."""

    def __init__(self, model: str | None = None, model_lookup: ModelLookup | None = None) -> None:
        self.session_id: str | None = None
        self.model = model
        self.model_lookup = model_lookup
        self.totals = UsageTotals()
        self.messages: list[str] = []
        self.last_error: str | None = None
        self.failure: str | None = None
        self.turns_completed = 0

    def feed(self, event: dict[str, Any]) -> list[Report]:
        kind = event.get("type")
        if kind == "thread.started":
            thread = event.get("thread_id")
            if isinstance(thread, str) and thread:
                self.session_id = thread
            return [Progress("codex started", "status")]
        if kind in ("item.started", "item.completed"):
            item = event.get("item")
            if isinstance(item, dict):
                return self._item(item, done=kind == "item.completed")
            return []
        if kind == "turn.completed":
            return self._turn_completed(event)
        if kind == "turn.failed":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            self.failure = str(message or self.last_error or "the turn failed")
            return []
        if kind == "error":
            self.last_error = str(event.get("message") or "error")
            return [Progress(short(f"error: {self.last_error}"), "status")]
        return []

    def _item(self, item: dict[str, Any], *, done: bool) -> list[Report]:
        itype = item.get("type")
        if itype == "agent_message" and done:
            text = str(item.get("text") or "")
            self.messages.append(text)
            return [Progress(short(text), "text")] if text else []
        if itype == "reasoning" and done and item.get("text"):
            return [Progress(short(str(item["text"])), "thinking")]
        if itype == "command_execution":
            command = item.get("command", "")
            if not done:
                return [Progress(short(f"$ {command}"), "tool")]
            output = str(item.get("aggregated_output") or "")
            return [Progress(short(f"exit {item.get('exit_code')}: {output}"), "tool")]
        if itype == "file_change" and done:
            changes = item.get("changes") or []
            paths = [str(c.get("path")) for c in changes if isinstance(c, dict)]
            return [Progress(short(f"changed {', '.join(paths) or 'files'}"), "tool")]
        if itype == "mcp_tool_call" and not done:
            name = f"{item.get('server', '')}.{item.get('tool', '')}".strip(".")
            return [Progress(short(f"tool {name}"), "tool")]
        if itype == "web_search" and not done:
            return [Progress(short(f"search: {item.get('query', '')}"), "tool")]
        if itype == "todo_list" and done:
            items = item.get("items") or []
            return [Progress(f"plan: {len(items)} step(s)", "status")]
        if itype == "error" and done:
            return [Progress(short(f"warning: {item.get('message', '')}"), "status")]
        return []

    def _turn_completed(self, event: dict[str, Any]) -> list[Report]:
        self.turns_completed += 1
        raw = event.get("usage")
        if not isinstance(raw, dict):
            return []
        usage = normalise_usage(raw)
        if not usage.total_tokens:
            return []
        if self.model is None and self.model_lookup is not None and self.session_id:
            self.model = self.model_lookup(self.session_id)
        report = UsageReport(usage, model=self.model)
        self.totals.add(report)
        return [report]

    def finish(self, end: Exit) -> TaskOutcome:
        status = provider_status(self.failure or self.last_error or "")
        if self.failure is not None:
            raise TaskFailed(f"codex: {self.failure}", provider_status=status)
        if end.code != 0:
            raise TaskFailed(exit_failure("codex", end, self.last_error), provider_status=status)
        if not self.turns_completed:
            raise TaskFailed(exit_failure("codex", end, self.last_error))
        return TaskOutcome(
            output=self.messages[-1] if self.messages else "",
            usage=self.totals.usage,
            model=self.model,
            session_id=self.session_id,
        )


# -- the command ----------------------------------------------------------------------


def _toml_string(value: str) -> str:
    # A JSON string is a TOML basic string; codex parses `-c` values as TOML.
    return json.dumps(value)


def provider_flags(base_url: str, retries: int) -> list[str]:
    """The custom-provider `-c` overrides that send codex to `base_url`."""
    entry = f"model_providers.{PROVIDER_ID}"
    settings = {
        "name": _toml_string(provider_name(base_url, PROVIDER_ID)),
        "base_url": _toml_string(base_url),
        "env_key": _toml_string(KEY_VAR),
        "wire_api": _toml_string("responses"),
        "request_max_retries": str(retries),
        "stream_max_retries": str(retries),
    }
    flags = ["-c", f"model_provider={_toml_string(PROVIDER_ID)}"]
    for key, value in settings.items():
        flags += ["-c", f"{entry}.{key}={value}"]
    return flags


def build_argv(cli: str, ctx: TaskContext, env: dict[str, str], level: Permission) -> list[str]:
    argv = [
        cli,
        "exec",
        "--json",
        "--skip-git-repo-check",
        # Plugins sync from github.com and analytics post to chatgpt.com: off, so the
        # only host codex talks to is the provider.
        "--disable",
        "plugins",
        "-c",
        "analytics.enabled=false",
        *permission_flags("codex", level),
    ]
    base_url = env.get(BASE_URL_VAR)
    if base_url:
        argv += provider_flags(base_url, int_option(ctx, "max_retries", 0) or 0)
    model = model_of(ctx, env)
    if model:
        argv += ["-m", model]
    argv += list_option(ctx, "extra_args")
    resume = session_id(ctx, "codex")
    if resume:
        argv += ["resume", resume]
    # "-": the prompt is read from stdin (no argv size limit, not visible in `ps`).
    argv.append("-")
    return argv


def model_of(ctx: TaskContext, env: dict[str, str]) -> str | None:
    return str_option(ctx, "model") or env.get(MODEL_VAR) or None


def build_env(ctx: TaskContext) -> dict[str, str]:
    env = dict(ctx.env)
    apply_home(env, "codex", HOME_VAR)
    home = env.get(HOME_VAR)
    if home and not Path(home).is_dir():
        try:
            Path(home).mkdir(mode=0o700, parents=True)
        except OSError as exc:
            raise TaskFailed(f"cannot create CODEX_HOME {home}: {exc.strerror}") from None
    return env


def codex_home(env: dict[str, str]) -> Path:
    value = env.get(HOME_VAR)
    return Path(value) if value else Path(env.get("HOME") or Path.home()) / ".codex"


def session_model_lookup(home: Path) -> ModelLookup:
    """Finds the model codex recorded for a thread in `home/sessions/…/rollout-*-ID.jsonl`."""

    def lookup(thread_id: str) -> str | None:
        path = rollout_path(home, thread_id)
        with contextlib.suppress(OSError):
            return _first_model(path) if path else None
        return None

    return lookup


def rollout_path(home: Path, thread_id: str) -> Path | None:
    with contextlib.suppress(OSError):
        for path in (home / "sessions").glob(f"*/*/*/rollout-*-{thread_id}.jsonl"):
            return path
    return None


def requests_from_rollout(
    home: Path, translator: CodexTranslator, stream: list[UsageReport]
) -> list[UsageReport] | None:
    """The last turn's requests as codex's rollout holds them (see the module docstring),
    or None. Each count of the turn is at most the stream's (equal, or a resumed thread's
    running total)."""
    thread = translator.session_id
    path = rollout_path(home, thread) if thread else None
    if path is None:
        return None
    from aiswitch.tokens.rows import R_MESSAGE
    from aiswitch.tokens.sources.codex import parse_codex_bytes

    rows, _malformed = parse_codex_bytes(path.read_bytes(), str(thread))
    if not rows or rows[-1][R_MESSAGE] is None:
        return None
    turn = rows[-1][R_MESSAGE]
    requests = [
        report if report.model else replace(report, model=translator.model)
        for report in reports_from_rows(row for row in rows if row[R_MESSAGE] == turn)
    ]
    logged, streamed = sum_usage(requests), sum_usage(stream)
    if any(getattr(logged, name) > getattr(streamed, name) for name in COUNTERS):
        return None
    return requests


def _first_model(path: Path) -> str | None:
    read = 0
    with path.open("rb") as stream:
        for line in stream:
            read += len(line)
            if read > SESSION_SCAN_BYTES:
                return None
            if b'"turn_context"' not in line:
                continue
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                model = record.get("payload", {}).get("model")
                if isinstance(model, str) and model:
                    return model
    return None


# -- refusals (see the module docstring) -------------------------------------------------

# The tools codex's sandbox and approval policy stand in front of.
_GATED_TOOLS: Final = ("exec_command", "apply_patch")
# codex's output of a command that ran: "…\nProcess exited with code 1\n…\nOutput:\n…".
_PROCESS_EXIT: Final = re.compile(r"^Process exited with code (-?\d+)$", re.MULTILINE)
# The words in a failed command's output that codex 0.169.0 takes for a sandbox denial
# (its binary holds them as one list; `echo Permission denied >&2; exit 1` is one too).
SANDBOX_DENIED_WORDS: Final = (
    "operation not permitted",
    "permission denied",
    "read-only file system",
    "failed to write file",
)
_PATCH_FILE: Final = re.compile(r"^\*\*\* (?:Add|Update|Delete) File: (.+)$", re.MULTILINE)
_PATCH_REJECTED: Final = "patch rejected: "
_ESCALATION_REJECTED: Final = "reject command"


def refusals(lines: list[bytes], sandbox: str | None) -> list[Progress]:
    """What codex refused in the last turn of a rollout (its lines), as `waiting` progress."""
    calls: dict[str, tuple[str, str]] = {}  # call id -> (tool, what it was asked to do)
    outputs: dict[str, str] = {}
    for line in lines:
        # Most of a rollout is instructions and messages: only calls and turns are parsed.
        if b'"call_id"' not in line and b'"task_started"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        payload = record.get("payload") if isinstance(record, dict) else None
        if not isinstance(payload, dict):
            continue
        kind, call_id = payload.get("type"), payload.get("call_id")
        if kind == "task_started":  # a turn begins: only the last one is this task's
            calls, outputs = {}, {}
        elif kind in ("function_call", "custom_tool_call") and isinstance(call_id, str):
            tool = str(payload.get("name") or "")
            if tool in _GATED_TOOLS:
                calls[call_id] = (tool, _asked(tool, payload))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = payload.get("output")
            if isinstance(call_id, str) and isinstance(output, str):
                outputs[call_id] = output
    found = []
    for call_id, (tool, what) in calls.items():
        output = outputs.get(call_id)
        if output is None:
            continue
        why = _refusal(tool, output, sandbox)
        if why:
            found.append(Progress(short(f"permission denied: {what} ({why})"), "waiting"))
    return found


def _asked(tool: str, payload: dict[str, Any]) -> str:
    if tool == "apply_patch":
        paths = _PATCH_FILE.findall(str(payload.get("input") or ""))
        return f"apply_patch {', '.join(paths)}" if paths else "apply_patch"
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        command = json.loads(str(payload.get("arguments"))).get("cmd")
        if isinstance(command, str) and command:
            return command
    return tool


def _refusal(tool: str, output: str, sandbox: str | None) -> str | None:
    """Why codex refused a call (from the call's output), or None if it did not."""
    if output.startswith(_PATCH_REJECTED):
        return output[len(_PATCH_REJECTED) :].split(";", 1)[0].strip()
    if _ESCALATION_REJECTED in output and "approval policy" in output:
        return "outside the sandbox: approval policy is never"
    exited = _PROCESS_EXIT.search(output)
    if tool != "exec_command" or not sandbox or not exited or exited.group(1) == "0":
        return None
    said = output.split("Output:", 1)[-1]
    if not any(word in said.lower() for word in SANDBOX_DENIED_WORDS):
        return None
    last = next((line.strip() for line in reversed(said.splitlines()) if line.strip()), "")
    return f"the {sandbox} sandbox: {last}"


def refusals_from_rollout(
    home: Path, translator: CodexTranslator, sandbox: str | None
) -> list[Progress]:
    thread = translator.session_id
    path = rollout_path(home, thread) if thread else None
    return refusals(path.read_bytes().splitlines(), sandbox) if path else []


class CodexAdapter(CliAdapter):
    name = "codex"
    spec = SPEC

    async def run_task(self, ctx: TaskContext) -> TaskOutcome:
        cli = self.located()
        level = permission_level(ctx)
        env = build_env(ctx)
        argv = build_argv(cli.path, ctx, env, level)
        base_url = env.get(BASE_URL_VAR)
        provider = provider_name(base_url, "openai")
        home = codex_home(env)
        translator = CodexTranslator(
            model=model_of(ctx, env), model_lookup=session_model_lookup(home)
        )
        return await drive(
            ctx,
            argv,
            env,
            translator,
            name="codex",
            provider=provider,
            stdin_data=ctx.prompt.encode(),
            per_request=lambda translator, stream: requests_from_rollout(home, translator, stream),
            after_exit=lambda translator: refusals_from_rollout(
                home, translator, permission_flag("codex", level, "--sandbox")
            ),
        )


def main() -> None:
    serve(CodexAdapter())


if __name__ == "__main__":
    main()
