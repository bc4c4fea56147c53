"""The `gemini` agent: the Gemini CLI run headless, one `gemini -p` per task.

    gemini -p "" -o stream-json --approval-mode MODE [-m MODEL] [--resume SESSION_ID]
           [EXTRA_ARGS…]                      (the prompt arrives on stdin; -p appends "")

Contract (docs/agents.md has the tables):
- Settings: every run gets a system settings file (GEMINI_CLI_SYSTEM_SETTINGS_PATH, which
  overrides the user's settings without touching them) that turns usage statistics and
  auto-update off and sets `general.maxAttempts` (retries); the machine's own system
  settings, if any, are merged into it. An API-key preset gets its own GEMINI_CLI_HOME
  whose `.gemini/settings.json` selects API-key auth when GEMINI_API_KEY is set (without
  it a custom GOOGLE_GEMINI_BASE_URL exits 41 "Invalid auth method selected").
- The model is the `model` option, else GEMINI_MODEL; passing it keeps gemini off its
  routing call.
- Progress: assistant text (by line), tool calls, tool results and non-fatal errors.
- Usage: one `tokens.usage` per API request (a `gemini` message of gemini's own chat log,
  `<GEMINI_CLI_HOME or ~>/.gemini/tmp/*/chats/session-*`, written since the task started),
  its message id as message and request id, when those messages add up to the final
  `result` stats; otherwise from the `result` stats, one `tokens.usage` per model. gemini's
  `output_tokens` are candidates only, so thoughts = total − input − output and
  normalised output = candidates + thoughts; `input_tokens` includes `cached`.
- A `result` with status error, a non-zero exit (gemini exits with the HTTP status
  modulo 256), or an exit without a result fail the task with gemini's own message.
- The session id (`init`) is the outcome's `session_id`; `params.session_id` resumes it
  with `--resume` (same cwd and GEMINI_CLI_HOME).
- Refusals: `gemini -p` never waits for an approval: its policy turns every "ask the
  user" into "deny". A tool it withholds at the approval mode (`HEADLESS_WITHHELD`, called
  anyway: `tool_not_registered`), a call a policy rule denies (`policy_violation`) or one a
  policy says to ask about ("requires user confirmation, which is not supported in
  non-interactive mode") is a failed `tool_result`, and becomes a `task.progress` of
  kind `waiting`, `permission denied: TOOL [what] (WHY)`: the user's to lift
  (`--permissions`, or their gemini policy).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from aiswitch.adapter_sdk import TaskContext, TaskFailed, TaskOutcome, serve
from aiswitch.tokens.usage import Usage

from ._common import (
    CliAdapter,
    CliSpec,
    Permission,
    aiswitch_home,
    apply_home,
    int_option,
    list_option,
    make_private_dirs,
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
from ._usage import UsageReport, UsageTotals, accounts_for, reports_from_rows

SPEC: Final = CliSpec(
    name="gemini",
    package="@google/gemini-cli",
    # The oldest version tested: stream-json output, --approval-mode and
    # GEMINI_CLI_SYSTEM_SETTINGS_PATH are what this adapter relies on.
    min_version="0.61.0",
    tested_version="0.61.0",
)
HOME_VAR: Final = "GEMINI_CLI_HOME"
SYSTEM_SETTINGS_VAR: Final = "GEMINI_CLI_SYSTEM_SETTINGS_PATH"
DEFAULT_SYSTEM_SETTINGS: Final = Path("/etc/gemini-cli/settings.json")
MODEL_VAR: Final = "GEMINI_MODEL"
KEY_VAR: Final = "GEMINI_API_KEY"
BASE_URL_VAR: Final = "GOOGLE_GEMINI_BASE_URL"
# gemini's own ceiling for general.maxAttempts.
MAX_ATTEMPTS_LIMIT: Final = 10

# What gemini's exit codes mean when it says nothing else (its docs; HTTP errors exit
# with the status modulo 256).
EXIT_MEANINGS: Final = {
    41: "authentication or configuration error",
    42: "invalid input",
    44: "sandbox error",
    52: "invalid configuration",
    53: "turn limit reached",
    130: "cancelled",
}
# The refusals a plan fails over on, by the exit code they give (status modulo 256): 402,
# 429, 500 and 502-504. None of gemini's own exit codes above is among them.
_REFUSAL_EXITS: Final = {status % 256: status for status in (402, 429, 500, 502, 503, 504)}


def provider_status(exit_code: int | None) -> int | None:
    """The HTTP status a provider refused the task with, from gemini's exit code."""
    return _REFUSAL_EXITS.get(exit_code) if exit_code is not None else None


log = logging.getLogger("aiswitch.adapter.gemini")

# The tools gemini 0.61.0 asks about interactively and so withholds in -p mode unless its
# approval mode allows them (its policies/write.toml: `decision = "deny"`, `interactive =
# false`; auto_edit allows the edits and web_fetch, yolo all).
HEADLESS_WITHHELD: Final = frozenset(
    {"replace", "run_shell_command", "write_file", "activate_skill", "web_fetch"}
)
# The error types and words of a tool_result that gemini's policy refused.
_NOT_OFFERED: Final = "tool_not_registered"
_POLICY_DENIED: Final = "policy_violation"
_ASKS_USER: Final = "requires user confirmation"
# The parameter that says what a refused tool call was about, by tool.
_SUBJECT_PARAMS: Final = ("command", "file_path", "url", "prompt", "name")


def normalise_stats(stats: dict[str, Any]) -> Usage:
    """One `stats` (or `stats.models[m]`) record → normalised usage."""
    prompt = _count(stats.get("input_tokens"))
    candidates = _count(stats.get("output_tokens"))
    total = _count(stats.get("total_tokens"))
    # Thoughts are in the total but not in output_tokens.
    thoughts = max(total - prompt - candidates, 0)
    return Usage.from_gemini(
        {
            "promptTokenCount": prompt,
            "candidatesTokenCount": candidates,
            "cachedContentTokenCount": _count(stats.get("cached")),
            "thoughtsTokenCount": thoughts,
        }
    )


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class GeminiTranslator:
    """gemini -o stream-json events → progress, usage and the task's outcome."""

    def __init__(self, approval_mode: str | None = None) -> None:
        self.approval_mode = approval_mode
        self.tools: dict[str, str] = {}  # tool id -> what was asked ("write_file a.txt")
        self.session_id: str | None = None
        self.model: str | None = None
        self.result: dict[str, Any] | None = None
        self.totals = UsageTotals()
        self.pending = ""
        self.answer: list[str] = []
        self.all_text: list[str] = []
        self.last_error: str | None = None

    def feed(self, event: dict[str, Any]) -> list[Report]:
        kind = event.get("type")
        if kind == "message":
            if event.get("role") == "assistant":
                return self._text(str(event.get("content") or ""))
            return []
        reports = self._flush()
        if kind == "init":
            session = event.get("session_id")
            if isinstance(session, str) and session:
                self.session_id = session
            model = event.get("model")
            if isinstance(model, str) and model:
                self.model = model
            reports.append(Progress(f"gemini started ({self.model or 'default model'})", "status"))
        elif kind == "tool_use":
            # The answer is what comes after the last tool call, as claude's and codex's are.
            self.answer = []
            tool = str(event.get("tool_name") or "tool")
            parameters = event.get("parameters")
            params = json.dumps(parameters or {}, ensure_ascii=False)
            self.tools[str(event.get("tool_id"))] = _asked(tool, parameters)
            reports.append(Progress(short(f"{tool}: {params}"), "tool"))
        elif kind == "tool_result":
            status, output = event.get("status", "done"), event.get("output")
            text = f"{status}: {output}" if output else str(status)
            reports.append(Progress(short(text), "tool"))
            refused = self._refusal(event)
            if refused is not None:
                reports.append(Progress(short(refused), "waiting"))
        elif kind == "error":
            self.last_error = str(event.get("message") or "error")
            severity = event.get("severity") or "error"
            reports.append(Progress(short(f"{severity}: {self.last_error}"), "status"))
        elif kind == "result":
            self.result = event
            reports += self._usage(event)
        return reports

    def _refusal(self, event: dict[str, Any]) -> str | None:
        """`permission denied: …` when gemini's policy refused this tool call, else None."""
        error = event.get("error")
        if event.get("status") != "error" or not isinstance(error, dict):
            return None
        asked = self.tools.get(str(event.get("tool_id")), "a tool")
        kind, message = error.get("type"), str(error.get("message") or "")
        if kind == _NOT_OFFERED and asked.split(" ", 1)[0] in HEADLESS_WITHHELD:
            mode = self.approval_mode or "default"
            why = f"gemini -p does not offer it at --approval-mode {mode}"
        elif kind == _POLICY_DENIED or _ASKS_USER in message:
            why = message or "refused by gemini's policy"
        else:
            return None
        return f"permission denied: {asked} ({why})"

    def _text(self, content: str) -> list[Report]:
        self.answer.append(content)
        self.all_text.append(content)
        self.pending += content
        reports: list[Report] = []
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            if line.strip():
                reports.append(Progress(short(line), "text"))
        return reports

    def _flush(self) -> list[Report]:
        line, self.pending = self.pending, ""
        return [Progress(short(line), "text")] if line.strip() else []

    def _usage(self, event: dict[str, Any]) -> list[Report]:
        stats = event.get("stats")
        if not isinstance(stats, dict):
            return []
        total = normalise_stats(stats)
        per_model: list[UsageReport] = []
        models = stats.get("models")
        if isinstance(models, dict):
            for model, entry in models.items():
                if isinstance(entry, dict):
                    per_model.append(UsageReport(normalise_stats(entry), model=str(model)))
        summed = Usage()
        for report in per_model:
            summed = summed + report.usage
        if per_model and summed == total:
            reports = [r for r in per_model if r.usage.total_tokens]
        elif total.total_tokens:
            reports = [UsageReport(total, model=self.model)]
        else:
            reports = []
        for report in reports:
            self.totals.add(report)
        return list(reports)

    def finish(self, end: Exit) -> TaskOutcome:
        result = self.result
        status = provider_status(end.code)
        if result is None:
            detail = self.last_error or end.stderr_line or EXIT_MEANINGS.get(end.code)
            raise TaskFailed(exit_failure("gemini", end, detail), provider_status=status)
        if result.get("status") != "success":
            error = result.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            message = f"gemini: {message or self.last_error or 'the run failed'}"
            raise TaskFailed(message, provider_status=status)
        if end.code != 0:
            detail = EXIT_MEANINGS.get(end.code) or end.stderr_line
            raise TaskFailed(exit_failure("gemini", end, detail))
        output = "".join(self.answer).strip() or "".join(self.all_text).strip()
        return TaskOutcome(
            output=output,
            usage=self.totals.usage,
            model=self.totals.model or self.model,
            session_id=self.session_id,
        )


def _asked(tool: str, parameters: object) -> str:
    """The tool and what it was asked to act on: `run_shell_command touch a.txt`."""
    if isinstance(parameters, dict):
        for name in _SUBJECT_PARAMS:
            value = parameters.get(name)
            if isinstance(value, str) and value:
                return f"{tool} {value}"
    return tool


# -- settings files -------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    return {}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_json_if_changed(path: Path, data: dict[str, Any]) -> None:
    """Atomic (temp file + rename) and only when the content differs: runs share files."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8") == text:
            return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".settings-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def quiet_settings(max_retries: int) -> dict[str, Any]:
    """What every run gets: no usage statistics, no auto-update, bounded retries."""
    attempts = min(max_retries + 1, MAX_ATTEMPTS_LIMIT)
    return {
        "privacy": {"usageStatisticsEnabled": False},
        "general": {
            "maxAttempts": attempts,
            "enableAutoUpdate": False,
            "enableAutoUpdateNotification": False,
        },
    }


def apply_system_settings(env: dict[str, str], max_retries: int) -> Path:
    """Point GEMINI_CLI_SYSTEM_SETTINGS_PATH at aiswitch's override file (machine's merged)."""
    machine = Path(env.get(SYSTEM_SETTINGS_VAR) or DEFAULT_SYSTEM_SETTINGS)
    root = aiswitch_home(env)
    target = root / "homes" / "gemini" / f"system-settings-{max_retries}.json"
    if machine != target:
        data = _merge(_read_json(machine), quiet_settings(max_retries))
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            make_private_dirs(root, "homes", "gemini")
            write_json_if_changed(target, data)
        except OSError as exc:
            raise TaskFailed(f"cannot write gemini settings {target}: {exc.strerror}") from None
    insecure = writable_ancestor(target)
    if insecure is not None:
        log.warning(
            "gemini ignores system settings below a folder others can write (%s): "
            "usage statistics and retries keep the user's settings",
            insecure,
        )
    env[SYSTEM_SETTINGS_VAR] = str(target)
    return target


def writable_ancestor(path: Path) -> Path | None:
    """The first folder above `path` that group or others may write, if any.

    gemini skips a system settings file below such a folder (e.g. anything under /tmp).
    """
    for folder in path.parents:
        with contextlib.suppress(OSError):
            if folder.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                return folder
    return None


def prepare_home_settings(home: Path, env: dict[str, str], max_retries: int) -> None:
    """The preset home's `.gemini/settings.json`: API-key auth plus the quiet settings."""
    path = home / ".gemini" / "settings.json"
    wanted = quiet_settings(max_retries)
    if env.get(KEY_VAR):
        wanted["security"] = {"auth": {"selectedType": "gemini-api-key"}}
    try:
        (home / ".gemini").mkdir(mode=0o700, exist_ok=True)
        write_json_if_changed(path, _merge(_read_json(path), wanted))
    except OSError as exc:
        raise TaskFailed(f"cannot write gemini settings {path}: {exc.strerror}") from None


# -- the command ----------------------------------------------------------------------


def model_of(ctx: TaskContext, env: dict[str, str]) -> str | None:
    return str_option(ctx, "model") or env.get(MODEL_VAR) or None


def build_argv(cli: str, ctx: TaskContext, env: dict[str, str], level: Permission) -> list[str]:
    # `-p ""` makes the run headless; gemini appends it to the prompt read from stdin.
    argv = [cli, "-p", "", "-o", "stream-json", *permission_flags("gemini", level)]
    model = model_of(ctx, env)
    if model:
        argv += ["-m", model]
    resume = session_id(ctx, "gemini")
    if resume:
        argv += ["--resume", resume]
    argv += list_option(ctx, "extra_args")
    return argv


def build_env(ctx: TaskContext) -> dict[str, str]:
    env = dict(ctx.env)
    retries = int_option(ctx, "max_retries", 0) or 0
    # Headless runs are in a folder the user chose: an untrusted folder would silently
    # limit the tools the permission level allows.
    env.setdefault("GEMINI_CLI_TRUST_WORKSPACE", "true")
    apply_system_settings(env, retries)
    home = apply_home(env, "gemini", HOME_VAR)
    if home is not None:
        prepare_home_settings(home, env, retries)
    return env


def chat_dir_roots(env: dict[str, str]) -> list[Path]:
    """Where gemini keeps its chats for this child: `<GEMINI_CLI_HOME or HOME>/.gemini/tmp`."""
    base = env.get(HOME_VAR) or env.get("HOME") or str(Path.home())
    return [Path(base) / ".gemini" / "tmp"]


def logged_requests(env: Mapping[str, str], session: str, started: float) -> list[UsageReport]:
    """The requests of `session` that gemini logged since `started` (epoch seconds), with
    their message ids; the ACP adapter reads `gemini --experimental-acp` sessions with it."""
    from aiswitch.tokens.rows import R_SESSION, R_TS
    from aiswitch.tokens.sources.gemini import parse_gemini_bytes

    rows: list[Any] = []
    for tmp in chat_dir_roots(dict(env)):
        for path in sorted(tmp.glob(f"*/chats/session-*{session[:8]}*")):
            if path.suffix not in (".json", ".jsonl"):
                continue
            parsed, _malformed = parse_gemini_bytes(path.read_bytes(), path)
            plain: list[tuple[Any, ...]] = [tuple(row) for row in parsed]
            rows += [r for r in plain if r[R_SESSION] == session and r[R_TS] >= started]
    return reports_from_rows(rows)


def requests_from_log(
    env: dict[str, str], started: float, translator: GeminiTranslator, stream: list[UsageReport]
) -> list[UsageReport] | None:
    """This task's requests as gemini logged them (see the module docstring), or None."""
    session = translator.session_id
    if not session:
        return None
    requests = logged_requests(env, session, started)
    return requests if accounts_for(requests, stream) else None


class GeminiAdapter(CliAdapter):
    name = "gemini"
    spec = SPEC

    async def run_task(self, ctx: TaskContext) -> TaskOutcome:
        cli = self.located()
        level = permission_level(ctx)
        env = build_env(ctx)
        argv = build_argv(cli.path, ctx, env, level)
        provider = provider_name(env.get(BASE_URL_VAR), "google")
        # gemini stamps its chat messages with this machine's clock, after it starts.
        started = time.time()
        return await drive(
            ctx,
            argv,
            env,
            GeminiTranslator(permission_flag("gemini", level, "--approval-mode")),
            name="gemini",
            provider=provider,
            stdin_data=ctx.prompt.encode(),
            per_request=lambda translator, stream: requests_from_log(
                env, started, translator, stream
            ),
        )


def main() -> None:
    serve(GeminiAdapter())


if __name__ == "__main__":
    main()
