"""Every request counted once: the adapters' per-request usage and the reports' sources,
replayed from what the pinned CLIs recorded (tests/fixtures/tokens/).

The fixtures are one session per CLI, recorded from claude 2.1.197, codex 0.169.0 and
gemini 0.61.0 against the fake provider: a task whose first request asks for a tool (usage
`TOOL`) and whose second answers (`ANSWER`), then the same session resumed for one more
request (`RESUMED`). Each CLI folder holds the two event streams the adapter read
(`stream-tool.jsonl`, `stream-resume.jsonl`) and the CLI's own files as it left them
(`home/`: a claude config dir, a CODEX_HOME, a GEMINI_CLI_HOME), with the temp folder's
path replaced by `/fixture`. tests/test_real_token_accounting.py runs the same with the
real CLIs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiswitch_adapters import claude, codex, gemini
from aiswitch_adapters._usage import UsageReport, sum_usage
from hypothesis import given, settings
from hypothesis import strategies as st
from support.cli import clean_env, run_cli

from aiswitch.home import Home
from aiswitch.testing.fake_script import FakeUsage
from aiswitch.tokens import usage as usage_module
from aiswitch.tokens.report_options import parse_report_options
from aiswitch.tokens.sources import report_for_source
from aiswitch.tokens.usage import Usage

FIXTURES = Path(__file__).parent / "fixtures" / "tokens"
PRESET = "fake"
# What the fake sent for each request when the fixtures were recorded.
TOOL = FakeUsage(100, 20, cache_read_tokens=30, cache_write_tokens=7, reasoning_tokens=3)
ANSWER = FakeUsage(50, 10, cache_read_tokens=60, reasoning_tokens=2)
RESUMED = FakeUsage(70, 7, cache_read_tokens=30, reasoning_tokens=1)
COUNTERS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def normalised(cli: str, sent: FakeUsage) -> Usage:
    """`sent` as aiswitch counts it from `cli`'s wire: Anthropic reports cache writes
    apart and no reasoning; OpenAI and Gemini fold cache writes into input."""
    if cli == "claude":
        return Usage(
            input_tokens=sent.input_tokens,
            output_tokens=sent.output_tokens,
            cache_read_tokens=sent.cache_read_tokens,
            cache_write_tokens=sent.cache_write_tokens,
        )
    return Usage(
        input_tokens=sent.input_tokens + sent.cache_write_tokens,
        output_tokens=sent.output_tokens,
        cache_read_tokens=sent.cache_read_tokens,
        reasoning_tokens=sent.reasoning_tokens,
    )


def everything(cli: str) -> dict[str, int]:
    total = normalised(cli, TOOL) + normalised(cli, ANSWER) + normalised(cli, RESUMED)
    return {name: getattr(total, name) for name in COUNTERS}


def events(cli: str, name: str) -> list[dict[str, Any]]:
    text = (FIXTURES / cli / f"{name}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def replay(translator: Any, cli: str, name: str) -> list[UsageReport]:
    """The usage reports a translator makes of a recorded stream, as `drive` holds them."""
    held: list[UsageReport] = []
    for event in events(cli, name):
        held += [r for r in translator.feed(event) if isinstance(r, UsageReport)]
    return held


def cli_home(tmp_path: Path, cli: str, *, before: str | None = None) -> Path:
    """A copy of the CLI's recorded files; `before`: cut each file at the first line
    holding this text (the files as they were before the resumed task)."""
    home = tmp_path / f"{cli}-home"
    shutil.copytree(FIXTURES / cli / "home", home)
    if before is not None:
        for path in home.rglob("*.jsonl"):
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            cut = next((i for i, line in enumerate(lines) if before in line), len(lines))
            path.write_text("".join(lines[:cut]), encoding="utf-8")
    return home


def requests_of(cli: str, tmp_path: Path, stream: str) -> tuple[Any, list[UsageReport]]:
    """What the adapter records for the recorded task `stream`: (translator, requests)."""
    if cli == "claude":
        translator: Any = claude.ClaudeTranslator()
        held = replay(translator, cli, stream)
        home = cli_home(tmp_path, cli)
        found = claude.requests_from_log({"CLAUDE_CONFIG_DIR": str(home)}, translator, held)
    elif cli == "codex":
        translator = codex.CodexTranslator()
        held = replay(translator, cli, stream)
        before = '"again"' if stream == "stream-tool" else None
        rollout_home = cli_home(tmp_path, cli, before=before)
        found = codex.requests_from_rollout(rollout_home, translator, held)
    else:
        translator = gemini.GeminiTranslator()
        held = replay(translator, cli, stream)
        before = '"again"' if stream == "stream-tool" else None
        started = events(cli, stream)[0]["timestamp"]
        from datetime import datetime

        found = gemini.requests_from_log(
            {"GEMINI_CLI_HOME": str(cli_home(tmp_path, cli, before=before))},
            datetime.fromisoformat(started).timestamp(),
            translator,
            held,
        )
    assert found is not None, f"{cli} {stream}: the log's requests did not account for {held}"
    return translator, found


# -- the adapters: one record per request, with the log's ids ---------------------------


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_a_tool_using_task_is_recorded_request_by_request_with_the_clis_ids(
    cli: str, tmp_path: Path
) -> None:
    translator, requests = requests_of(cli, tmp_path, "stream-tool")

    assert [r.usage for r in requests] == [normalised(cli, TOOL), normalised(cli, ANSWER)]
    assert all(r.message_id and r.request_id for r in requests)
    assert len({(r.message_id, r.request_id) for r in requests}) == 2
    if cli == "claude":  # the ids claude's stream named, and its cost shared out
        assert [(r.message_id, r.request_id) for r in requests] == translator.messages
        total_cost = events(cli, "stream-tool")[-1]["total_cost_usd"]
        assert sum(r.cost_usd or 0 for r in requests) == pytest.approx(total_cost)


def test_codex_reports_a_resumed_turn_as_the_threads_running_total() -> None:
    # What the adapter recorded before issue 12 (defect 3): the stream's own figure.
    held = replay(codex.CodexTranslator(), "codex", "stream-resume")

    assert sum_usage(held) == normalised("codex", TOOL) + normalised("codex", ANSWER) + normalised(
        "codex", RESUMED
    )


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_a_resumed_task_is_recorded_as_its_own_request_only(cli: str, tmp_path: Path) -> None:
    _translator, requests = requests_of(cli, tmp_path, "stream-resume")

    assert [r.usage for r in requests] == [normalised(cli, RESUMED)]
    assert requests[0].message_id and requests[0].request_id


def test_a_log_that_does_not_add_up_to_the_stream_is_not_used(tmp_path: Path) -> None:
    translator = claude.ClaudeTranslator()
    held = replay(translator, "claude", "stream-tool")
    home = cli_home(tmp_path, "claude")
    for path in home.rglob("*.jsonl"):  # one request's output changed after the fact
        path.write_text(path.read_text().replace('"output_tokens":20', '"output_tokens":21'))

    assert claude.requests_from_log({"CLAUDE_CONFIG_DIR": str(home)}, translator, held) is None


# -- the reports: the ledger, the CLI's log in the preset home, and both ------------------


def ledger_lines(cli: str, tmp_path: Path) -> list[dict[str, Any]]:
    """The ledger lines the parent writes for the two recorded tasks (compact form)."""
    lines = []
    for stream in ("stream-tool", "stream-resume"):
        translator, requests = requests_of(cli, tmp_path / stream, stream)
        for request in requests:
            line: dict[str, Any] = {
                "v": 1,
                "ts": "2026-12-04T13:01:00Z",
                "agent": cli,
                "preset": PRESET,
                "model": request.model,
                "session_id": translator.session_id,
                "message_id": request.message_id,
                "request_id": request.request_id,
            }
            line.update({name: getattr(request.usage, name) for name in COUNTERS})
            lines.append(line)
    return lines


def aiswitch_home(tmp_path: Path, cli: str, *, ledger: bool) -> Home:
    """An aiswitch home whose preset `fake` ran `cli`: its files in the preset home."""
    home = Home(tmp_path / "ais")
    home.ensure()
    shutil.copytree(FIXTURES / cli / "home", home.root / "homes" / cli / PRESET)
    if ledger:
        text = "".join(json.dumps(line) + "\n" for line in ledger_lines(cli, tmp_path))
        home.ledger.write_text(text, encoding="utf-8")
    return home


def totals(home: Home, source: str, user_home: Path) -> dict[str, Any]:
    options = parse_report_options(by="day", timezone="UTC")
    env = {"HOME": str(user_home)}  # the user's own CLI homes: empty
    report = report_for_source(source, home, options, env, use_cache=False)
    wanted = (*COUNTERS, "requests")
    return {name: report.totals[name] for name in wanted}


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_reports_read_the_logs_aiswitch_keeps_in_its_preset_homes(cli: str, tmp_path: Path) -> None:
    home = aiswitch_home(tmp_path, cli, ledger=False)
    empty = tmp_path / "user"
    empty.mkdir()

    assert totals(home, cli, empty) == {**everything(cli), "requests": 3}


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_source_all_counts_what_the_ledger_and_the_log_share_once(cli: str, tmp_path: Path) -> None:
    home = aiswitch_home(tmp_path, cli, ledger=True)
    empty = tmp_path / "user"
    empty.mkdir()

    expected = {**everything(cli), "requests": 3}
    assert totals(home, "aiswitch", empty) == expected
    assert totals(home, cli, empty) == expected
    assert totals(home, "all", empty) == expected


def test_report_verbose_names_the_preset_homes_it_reads(tmp_path: Path) -> None:
    home = aiswitch_home(tmp_path, "codex", ledger=False)
    env = clean_env(home.root, HOME=str(tmp_path))

    out = run_cli("tokens", "report", "--source", "all", "-v", "--json", env=env)

    assert out.code == 0, out.stderr
    assert f"codex logs in {home.root / 'homes' / 'codex' / PRESET}" in out.stderr
    assert "claude logs in none found" in out.stderr
    assert out.json()["totals"]["requests"] == 3


def test_the_table_counts_api_requests_under_that_name(tmp_path: Path) -> None:
    # Two tasks, three API requests: three ledger lines, so three requests (issue 12,
    # defect 8: the column counted ledger lines, one per task, under "Reqs").
    home = aiswitch_home(tmp_path, "claude", ledger=True)
    env = clean_env(home.root, HOME=str(tmp_path), COLUMNS="200")

    out = run_cli("tokens", "report", "--timezone", "UTC", env=env)

    assert out.code == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if "Input" in line)
    assert "Requests" in header
    total = next(line for line in out.stdout.splitlines() if "Total" in line and "│" in line)
    assert total.rstrip(" │").split()[-1] == "3"


def fallback_lines(cli: str) -> list[dict[str, Any]]:
    """The ledger lines the parent writes for the recorded tool-using task when the CLI's
    log did not account for its usage (`drive` keeps the stream's reports): sums, no ids."""
    translator = {
        "claude": claude.ClaudeTranslator,
        "codex": codex.CodexTranslator,
        "gemini": gemini.GeminiTranslator,
    }[cli]()
    lines = []
    for report in replay(translator, cli, "stream-tool"):
        assert report.message_id is None and report.request_id is None
        line: dict[str, Any] = {
            "v": 1,
            "ts": "2026-12-04T13:01:00Z",
            "agent": cli,
            "preset": PRESET,
            "model": report.model,
            "session_id": translator.session_id,
        }
        if report.requests != 1:
            line["requests"] = report.requests
        line.update({name: getattr(report.usage, name) for name in COUNTERS})
        lines.append(line)
    assert lines
    return lines


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_source_all_counts_a_task_recorded_as_sums_once(cli: str, tmp_path: Path) -> None:
    # Issue 12, part e: a ledger line without ids (the stream's sums, when the CLI's log did
    # not account for them) could not be matched with the log's entries of the same two
    # requests, so --source all counted the task twice.
    home = Home(tmp_path / "ais")
    home.ensure()
    logs = cli_home(tmp_path, cli, before='"again"')  # the files as the tool task left them
    shutil.copytree(logs, home.root / "homes" / cli / PRESET)
    home.ledger.write_text(
        "".join(json.dumps(line) + "\n" for line in fallback_lines(cli)), encoding="utf-8"
    )
    empty = tmp_path / "user"
    empty.mkdir()
    total = normalised(cli, TOOL) + normalised(cli, ANSWER)
    tokens = {name: getattr(total, name) for name in COUNTERS}

    ledger = totals(home, "aiswitch", empty)
    assert {name: ledger[name] for name in COUNTERS} == tokens
    log = totals(home, cli, empty)
    assert {name: log[name] for name in COUNTERS} == tokens
    assert log["requests"] == 2
    both = totals(home, "all", empty)
    assert {name: both[name] for name in COUNTERS} == tokens
    assert both["requests"] == ledger["requests"]
    # Issue 12, defect 8: the sums' record counts the requests claude's stream named (codex's
    # and gemini's streams name none: one per record).
    assert ledger["requests"] == (2 if cli == "claude" else 1)


def test_a_usage_notification_for_several_requests_is_one_record_counting_them() -> None:
    from types import SimpleNamespace

    from aiswitch.coordinator.usage_records import UsageRecords
    from aiswitch.protocol.models import UsageParams
    from aiswitch.tokens.ledger import ledger_line
    from aiswitch.tokens.records import LedgerRecord

    params = UsageParams.model_validate(
        {"task_id": "t-1", "usage": {"input_tokens": 5}, "session_id": "s-1", "requests": 3}
    )
    handle = SimpleNamespace(
        agent=SimpleNamespace(name="claude"), env={}, agent_id="a", preset=None
    )
    record = UsageRecords("run-1").stray(handle, params)
    line = json.loads(record.line)
    assert line["requests"] == 3
    # The line made without the model is the model's own line of the same record.
    assert record.line == ledger_line(LedgerRecord.model_validate(line))
    one = UsageRecords("run-1").stray(handle, params.model_copy(update={"requests": 1}))
    assert "requests" not in json.loads(one.line)  # the default is left out
    with pytest.raises(ValueError):
        UsageParams.model_validate({"task_id": "t", "usage": {}, "requests": 0})


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(0, 2**40), min_size=5, max_size=5).map(
            lambda counts: Usage(**dict(zip(usage_module.COUNTERS, counts, strict=True)))
        ),
        max_size=6,
    )
)
def test_a_total_of_usages_is_their_sum_added_one_by_one(usages: list[Usage]) -> None:
    one_by_one = Usage()
    for usage in usages:
        one_by_one = one_by_one + usage
    assert Usage.total(usages) == one_by_one
    assert Usage.total(usages).total_tokens == sum(u.total_tokens for u in usages)
