"""Attribution: every ledger record names the base URL host its requests went to (never the
key) and, when the task had a workspace, its git branch; reports group by both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from test_workspaces import GIT_IDENTITY, make_repo, results_by_agent, writers

from aiswitch.home import Home
from aiswitch.presets.hosts import base_url_host
from aiswitch.tokens.records import LedgerRecord
from aiswitch.tokens.report import build_report
from aiswitch.tokens.report_options import parse_report_options

SECRET = "sk-attribution-secret-000000000000"


def ledger(home: Home) -> list[dict[str, Any]]:
    return [json.loads(line) for line in home.ledger.read_text().splitlines() if line]


@pytest.mark.parametrize(
    ("agent", "env", "host"),
    [
        ("claude", {"ANTHROPIC_BASE_URL": "https://API.Moonshot.ai/anthropic"}, "api.moonshot.ai"),
        ("codex", {"OPENAI_BASE_URL": "http://127.0.0.1:8123/v1"}, "127.0.0.1"),
        ("gemini", {}, "generativelanguage.googleapis.com"),  # the CLI's own vendor
        ("mine", {"MY_BASE_URL": "https://llm.example.test/x"}, "llm.example.test"),
        ("mine", {}, None),
        ("claude", {"ANTHROPIC_BASE_URL": "not a url"}, None),
    ],
)
def test_the_host_is_the_base_urls_host_in_lower_case(
    agent: str, env: dict[str, str], host: str | None
) -> None:
    assert base_url_host(agent, env) == host


def test_the_first_environment_that_sets_the_base_url_wins() -> None:
    preset = {"OPENAI_BASE_URL": "https://preset.example.test"}
    agent_env = {"OPENAI_BASE_URL": "https://agent.example.test"}

    assert base_url_host("codex", preset, agent_env) == "preset.example.test"
    assert base_url_host("codex", {}, agent_env) == "agent.example.test"


def test_records_of_parallel_workspaces_carry_their_branch_and_host_but_no_key(
    tmp_path: Path, home: Home, env: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    writers(
        home,
        {
            name: {
                "MOCK_WRITE": json.dumps({f"{name}.txt": "x\n"}),
                "OPENAI_BASE_URL": f"https://{name}.example.test/v1",
                "OPENAI_API_KEY": SECRET,
            }
            for name in ("w1", "w2")
        },
    )
    genv = {**env, **GIT_IDENTITY}

    done = run_cli("run", "--parallel", "w1,w2", "change things", "--json", env=genv, cwd=repo)

    assert done.code == 0, done.stderr
    results = results_by_agent(done)
    records = ledger(home)
    assert {r["agent"] for r in records} == {"w1", "w2"}
    for record in records:
        name = record["agent"]
        assert record["branch"] == results[f"{name}#1"]["workspace"]["branch"]
        assert record["host"] == f"{name}.example.test"
    assert SECRET not in home.ledger.read_text()

    report = run_cli("tokens", "report", "--by", "host,branch", "--json", env=genv)
    assert report.code == 0, report.stderr
    rows = report.json()["rows"]
    assert [(row["host"], row["branch"]) for row in rows] == sorted(
        (r["host"], r["branch"]) for r in records
    )


def test_a_task_without_a_workspace_has_no_branch(home: Home, env: dict[str, str]) -> None:
    done = run_cli("run", "--agent", "mock", "hello", "--json", env=env)

    assert done.code == 0, done.stderr
    (record,) = ledger(home)
    assert "branch" not in record  # compact form: null is left out
    assert "host" not in record  # the mock names no base URL


def test_reports_group_by_host_and_branch_with_nulls_first() -> None:
    records = [
        LedgerRecord(agent="a", host="h2", branch="b1", input_tokens=1),
        LedgerRecord(agent="a", host="h1", branch="b1", input_tokens=2),
        LedgerRecord(agent="a", host="h1", branch=None, input_tokens=4),
        LedgerRecord(agent="a", input_tokens=8),
    ]

    report = build_report(records, parse_report_options(by="host,branch", timezone="UTC"))

    assert [(r["host"], r["branch"], r["input_tokens"]) for r in report.rows] == [
        (None, None, 8),
        ("h1", None, 4),
        ("h1", "b1", 2),
        ("h2", "b1", 1),
    ]


@pytest.mark.timeout(60)
async def test_a_runs_caller_is_on_the_run_and_on_each_of_its_ledger_records(
    home: Home, env: dict[str, str]
) -> None:
    from aiswitch.coordinator.coordinator import Coordinator
    from aiswitch.coordinator.request import RunRequest
    from aiswitch.coordinator.specs import parse_specs

    coordinator = Coordinator(home, parent_env=env)
    request = RunRequest(
        mode="parallel", specs=parse_specs("mock,mock@fast"), prompt="hi", caller="claude-code/2.1"
    )

    result = await coordinator.run(request)

    assert result.caller == "claude-code/2.1"
    records = ledger(home)
    assert len(records) == 2
    assert {r["caller"] for r in records} == {"claude-code/2.1"}
    report = run_cli("tokens", "report", "--by", "caller", "--json", env=env)
    assert report.code == 0, report.stderr
    assert [(row["caller"], row["requests"]) for row in report.json()["rows"]] == [
        ("claude-code/2.1", 2)
    ]


def test_a_run_from_the_command_line_has_no_caller(home: Home, env: dict[str, str]) -> None:
    done = run_cli("run", "--agent", "mock", "hello", "--json", env=env)

    assert done.code == 0, done.stderr
    assert done.json()["caller"] is None
    (record,) = ledger(home)
    assert "caller" not in record
