"""The gemini adapter's translation of `gemini -o stream-json`, replayed from the captured
streams in tests/fixtures/cli/, and the settings, command and environment it builds.
No network and no real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiswitch_adapters._drive import (
    Exit,
    Progress,
    Report,
)
from aiswitch_adapters._usage import UsageReport
from aiswitch_adapters.gemini import GeminiTranslator, build_argv, build_env
from test_adapter_common import make_ctx

from aiswitch.adapter_sdk import TaskFailed
from aiswitch.tokens.usage import Usage

FIXTURES = Path(__file__).parent / "fixtures" / "cli"
SCRIPTED_TEXT = "Scripted answer: the parser now has three new tests."
# The fake's scripted usage as Gemini's wire carries it: cache writes fold into the
# prompt, output = candidates + thoughts.
SCRIPTED_NORMALISED = Usage(
    input_tokens=1200 + 78, output_tokens=340, cache_read_tokens=560, reasoning_tokens=90
)


def replay(name: str) -> tuple[GeminiTranslator, list[Report]]:
    translator = GeminiTranslator()
    reports: list[Report] = []
    for line in (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            reports += translator.feed(json.loads(line))
    return translator, reports


def usage_reports(reports: list[Report]) -> list[UsageReport]:
    return [r for r in reports if isinstance(r, UsageReport)]


def progress(reports: list[Report], kind: str) -> list[str]:
    return [r.text for r in reports if isinstance(r, Progress) and r.kind == kind]


def test_streamed_text_becomes_one_progress_line_the_output_and_normalised_usage() -> None:
    translator, reports = replay("gemini-text")
    # Four deltas, one line of progress (flushed by the result event).
    assert progress(reports, "text") == [SCRIPTED_TEXT]
    (usage,) = usage_reports(reports)
    # Thoughts (90) are only in the total: normalised output = 250 candidates + 90.
    assert usage.usage == SCRIPTED_NORMALISED
    assert usage.model == "fake-gemini"
    outcome = translator.finish(Exit(0))
    assert outcome.output == SCRIPTED_TEXT
    assert outcome.session_id == "a8e63be2-1996-4a36-9f6a-3f2d3fa2efe4"
    assert outcome.model == "fake-gemini"


def test_tool_calls_become_tool_progress_and_usage_covers_both_requests() -> None:
    translator, reports = replay("gemini-tool")
    assert progress(reports, "tool") == ['list_directory: {"dir_path": "."}', "success"]
    (usage,) = usage_reports(reports)
    assert usage.usage == Usage(
        input_tokens=1995 - 590, output_tokens=287 + 95, cache_read_tokens=590, reasoning_tokens=95
    )
    assert translator.finish(Exit(0)).output == SCRIPTED_TEXT


def test_an_api_error_result_fails_the_task_with_the_providers_message() -> None:
    translator, reports = replay("gemini-error-429")
    assert usage_reports(reports) == []
    with pytest.raises(TaskFailed) as caught:
        translator.finish(Exit(429 % 256))
    assert caught.value.message.startswith("gemini: [API Error: fake quota gone]")


def test_a_gemini_that_exits_without_a_result_says_what_its_exit_code_means() -> None:
    translator = GeminiTranslator()
    with pytest.raises(TaskFailed, match="gemini exited with code 41: Invalid auth method"):
        translator.finish(Exit(41, "Invalid auth method selected."))
    with pytest.raises(TaskFailed, match="code 53: turn limit reached"):
        translator.finish(Exit(53))


# -- settings, command and environment ------------------------------------------------


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_run_gets_system_settings_without_usage_statistics_or_retries(
    tmp_path: Path,
) -> None:
    machine = tmp_path / "machine-settings.json"
    machine.write_text(json.dumps({"tools": {"sandbox": False}}))
    ctx = make_ctx(
        env={
            "AISWITCH_HOME": str(tmp_path / "ais"),
            "GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(machine),
        }
    )
    env = build_env(ctx)
    settings = read_json(Path(env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"]))
    assert settings["privacy"]["usageStatisticsEnabled"] is False
    assert settings["general"]["maxAttempts"] == 1
    assert settings["tools"] == {"sandbox": False}  # the machine's settings are kept
    assert "GEMINI_CLI_HOME" not in env  # no preset: the user's own home
    assert env["GEMINI_CLI_TRUST_WORKSPACE"] == "true"


def test_an_api_key_preset_home_selects_api_key_auth(tmp_path: Path) -> None:
    ctx = make_ctx(
        env={
            "AISWITCH_HOME": str(tmp_path),
            "AISWITCH_PRESET": "google",
            "GEMINI_API_KEY": "AIza-not-a-real-key",
        },
        config={"max_retries": 2},
    )
    env = build_env(ctx)
    home = Path(env["GEMINI_CLI_HOME"])
    assert home == tmp_path / "homes" / "gemini" / "google"
    settings = read_json(home / ".gemini" / "settings.json")
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert settings["general"]["maxAttempts"] == 3
    assert settings["privacy"]["usageStatisticsEnabled"] is False


@pytest.mark.parametrize(
    ("level", "mode"), [("read-only", "default"), ("edit", "auto_edit"), ("full", "yolo")]
)
def test_each_permission_level_is_a_gemini_approval_mode(level: str, mode: str) -> None:
    argv = build_argv("gemini", make_ctx(), {}, level)  # type: ignore[arg-type]
    assert argv[argv.index("--approval-mode") + 1] == mode


def test_the_model_and_resume_are_passed_and_the_prompt_comes_from_stdin() -> None:
    ctx = make_ctx(session_id="de20fb4c-699e-4fdc-9af5-5301bf09e130")
    argv = build_argv("gemini", ctx, {"GEMINI_MODEL": "gemini-2.5-pro"}, "edit")
    assert argv[:5] == ["gemini", "-p", "", "-o", "stream-json"]
    assert argv[argv.index("-m") + 1] == "gemini-2.5-pro"
    assert argv[argv.index("--resume") + 1] == "de20fb4c-699e-4fdc-9af5-5301bf09e130"


def tool_events(
    name: str, parameters: dict[str, Any], error: dict[str, str]
) -> list[dict[str, Any]]:
    """A tool call gemini 0.61.0 refused, as its stream carries it (tests/test_real_waiting.py
    runs the real CLI)."""
    tool_id = f"{name}__{name}_1796408899418_0"
    use = {"type": "tool_use", "tool_name": name, "tool_id": tool_id, "parameters": parameters}
    result = {
        "type": "tool_result",
        "tool_id": tool_id,
        "status": "error",
        "output": error["message"],
        "error": error,
    }
    return [use, result]


@pytest.mark.parametrize(
    ("name", "parameters", "error", "said"),
    [
        (
            "write_file",
            {"file_path": "made.txt", "content": "x"},
            {"type": "tool_not_registered", "message": 'Tool "write_file" not found.'},
            "permission denied: write_file made.txt "
            "(gemini -p does not offer it at --approval-mode default)",
        ),
        (
            "run_shell_command",
            {"command": "rm -rf build"},
            {"type": "policy_violation", "message": "Tool execution denied by policy."},
            "permission denied: run_shell_command rm -rf build (Tool execution denied by policy.)",
        ),
        (
            "run_shell_command",
            {"command": "make deploy"},
            {
                "type": "unhandled_exception",
                "message": 'Tool execution for "Shell" requires user confirmation, which is '
                "not supported in non-interactive mode.",
            },
            'permission denied: run_shell_command make deploy (Tool execution for "Shell" '
            "requires user confirmation, which is not supported in non-interactive mode.)",
        ),
    ],
)
def test_a_tool_call_geminis_policy_refused_is_reported_as_waiting(
    name: str, parameters: dict[str, Any], error: dict[str, str], said: str
) -> None:
    translator = GeminiTranslator("default")
    reports = [r for event in tool_events(name, parameters, error) for r in translator.feed(event)]
    assert progress(reports, "waiting") == [said]


@pytest.mark.parametrize(
    ("name", "error"),
    [
        # A tool gemini does not have at all: the model's mistake, not a permission.
        (
            "make_coffee",
            {"type": "tool_not_registered", "message": 'Tool "make_coffee" not found.'},
        ),
        # Outside the workspace: no permission level allows it.
        ("write_file", {"type": "invalid_tool_params", "message": "Path not in workspace: …"}),
        ("read_file", {"type": "file_not_found", "message": "File not found: a.txt"}),
    ],
)
def test_a_tool_error_that_no_permission_lifts_is_not_waiting(
    name: str, error: dict[str, str]
) -> None:
    translator = GeminiTranslator("default")
    events = tool_events(name, {"file_path": "a.txt"}, error)
    reports = [r for event in events for r in translator.feed(event)]
    assert progress(reports, "waiting") == []
    assert len(progress(reports, "tool")) == 2
