"""Plans run on real mock processes: the order by dependencies and priority, skipped
dependants, outputs fed to placeholders, capability routing to the least-loaded agent, and
failover after a crash, each proved from the mocks' own task logs (`MOCK_TASK_LOG`)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli

from aiswitch.home import Home

pytestmark = pytest.mark.timeout(120)


def agents_yaml(home: Home, agents: dict[str, Any]) -> None:
    home.ensure()
    (home.config / "agents.yaml").write_text(json.dumps({"agents": agents}))


def task_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_task(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The plan's results by their task id (`id`), and by their `RUN/N` ids too."""
    found = {r["id"]: r for r in doc["results"]}
    found.update({r["task_id"]: r for r in doc["results"]})
    return found


def plan_id(doc: dict[str, Any], attempt_id: str) -> str:
    """The plan task id of a mock log line's `task_id` (`RUN/N.ATTEMPT`)."""
    return str(by_task(doc)[attempt_id.rsplit(".", 1)[0]]["id"])


def test_ready_tasks_start_by_priority_and_never_before_their_dependencies(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.log"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "concurrency: 1\n"
        "defaults: {agent: mock}\n"
        "tasks:\n"
        "  - {id: low, prompt: x, priority: 0}\n"
        "  - {id: high, prompt: x, priority: 5}\n"
        "  - {id: after-high, prompt: x, priority: 10, depends_on: [high]}\n"
        "  - {id: middle, prompt: x, priority: 3}\n"
        "  - {id: last, prompt: x, priority: 99, depends_on: [low, after-high]}\n"
    )
    done = run_cli("run", "--plan", str(plan), "--json", env={**env, "MOCK_TASK_LOG": str(log)})
    assert done.code == 0, done.stderr
    doc = done.json()
    assert doc["mode"] == "plan" and doc["status"] == "ok"
    events = task_log(log)
    starts = [plan_id(doc, e["task_id"]) for e in events if e["event"] == "start"]
    # One at a time: the best ready task each time. `after-high` (10) became ready when
    # `high` ended, and goes before `middle` (3) and `low` (0), which were waiting.
    assert starts == ["high", "after-high", "middle", "low", "last"]
    # From the mocks' own lines: no task started before each of its dependencies ended.
    position = {(e["event"], plan_id(doc, e["task_id"])): n for n, e in enumerate(events)}
    for result in doc["results"]:
        for dep in result["depends_on"]:
            assert position[("end", dep)] < position[("start", result["id"])]


def test_a_failed_task_skips_its_dependants_and_the_plan_goes_on_with_every_other_branch(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.log"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "defaults: {agent: mock, options: {output: 'out of {prompt}'}}\n"
        "tasks:\n"
        "  - {id: broken, prompt: a, options: {fail: true}}\n"
        "  - {id: needs-broken, prompt: b, depends_on: [broken]}\n"
        "  - {id: needs-needs, prompt: c, depends_on: [needs-broken]}\n"
        "  - id: anyway\n"
        "    depends_on: [broken, fine]\n"
        "    continue_on_failure: true\n"
        "    prompt: 'broken was {broken.status} on {broken.agent}; fine said {fine.output};"
        " {braces} stay'\n"
        "  - {id: fine, prompt: d}\n"
    )
    done = run_cli("run", "--plan", str(plan), "--json", env={**env, "MOCK_TASK_LOG": str(log)})
    assert done.code == 7, done.stderr  # partial
    doc = done.json()
    assert doc["status"] == "partial"
    results = by_task(doc)
    assert results["broken"]["status"] == "failed"
    assert results["needs-broken"]["status"] == "skipped"
    assert results["needs-broken"]["error"] == "skipped: dependency broken failed"
    assert results["needs-broken"]["attempts"] == 0
    assert results["needs-needs"]["error"] == "skipped: dependency needs-broken was skipped"
    assert results["fine"]["status"] == "ok"
    anyway = results["anyway"]
    assert anyway["status"] == "ok"
    assert anyway["prompt"] == ("broken was failed on mock; fine said out of d; {braces} stay")
    assert anyway["output"] == f"out of {anyway['prompt']}"
    started = {plan_id(doc, e["task_id"]) for e in task_log(log) if e["event"] == "start"}
    assert started == {"broken", "anyway", "fine"}


def test_dependants_are_fed_their_dependencies_outputs_and_a_fan_out_gives_all_of_them(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "defaults: {agent: mock, options: {output: '<{prompt}>'}}\n"
        "tasks:\n"
        "  - {id: write, prompt: w}\n"
        "  - {id: review, prompt: 'r {item}: {write.output}', depends_on: [write],"
        " for_each: [one, two]}\n"
        "  - {id: fix, prompt: 'f {review[2].output} | {review.output}', depends_on: [review]}\n"
    )
    done = run_cli("run", "--plan", str(plan), "--json", env=env)
    assert done.code == 0, done.stderr
    results = by_task(done.json())
    assert results["write"]["output"] == "<w>"
    assert results["review[1]"]["output"] == "<r one: <w>>"
    assert results["review[2]"]["output"] == "<r two: <w>>"
    assert results["fix"]["prompt"] == "f <r two: <w>> | <r one: <w>>\n\n<r two: <w>>"


def test_a_capability_task_goes_to_the_least_loaded_agent_that_has_it(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.log"
    mock = [sys.executable, "-m", "aiswitch_adapters.mock"]
    agents_yaml(
        home,
        {
            "mock": {"capabilities": ["review"], "env": {"MOCK_LATENCY": "0.3"}},
            "second": {"command": mock, "capabilities": ["review"], "env_passthrough": ["MOCK_*"]},
            "third": {"command": mock, "capabilities": ["other"]},
        },
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "tasks:\n"
        "  - {id: busy, agent: mock, prompt: x, options: {latency: '1'}}\n"
        "  - {id: review, capability: review, prompt: 'r {item}', for_each: [1, 2, 3, 4, 5]}\n"
    )
    done = run_cli(
        "run",
        "--plan",
        str(plan),
        "--json",
        env={**env, "MOCK_TASK_LOG": str(log), "MOCK_LATENCY": "0.3"},
    )
    assert done.code == 0, done.stderr
    doc = done.json()
    agents = Counter(r["agent"] for r in doc["results"] if r["id"].startswith("review"))
    # `mock` already has `busy`: of five reviews, `second` gets three and `mock` two.
    assert agents == {"second": 3, "mock": 2}
    # The mocks' log says the same: who ran each review.
    ran_on = Counter(
        e["agent_id"].split(".")[0]
        for e in task_log(log)
        if e["event"] == "start" and plan_id(doc, e["task_id"]).startswith("review")
    )
    assert ran_on == {"second": 3, "mock": 2}


def test_a_task_whose_agent_crashes_fails_over_to_another_agent_with_the_capability(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.log"
    agents_yaml(
        home,
        {
            # The first candidate (built-ins come first) crashes on every task.
            "mock": {"capabilities": ["build"], "env": {"MOCK_CRASH_RATE": "1"}},
            "steady": {
                "command": [sys.executable, "-m", "aiswitch_adapters.mock"],
                "capabilities": ["build"],
                "env_passthrough": ["MOCK_*"],
            },
        },
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "tasks:\n"
        "  - {id: build, capability: build, prompt: make it, retries: 0}\n"
        "  - {id: pinned, agent: mock, prompt: x, retries: 0, fallback: [steady],"
        " depends_on: [build]}\n"
    )
    done = run_cli("run", "--plan", str(plan), "--json", env={**env, "MOCK_TASK_LOG": str(log)})
    assert done.code == 0, done.stderr
    doc = done.json()
    results = by_task(doc)
    for task in ("build", "pinned"):
        result = results[task]
        # Two attempts: the crash on mock, then the failover to steady (a new attempt).
        assert result["status"] == "ok" and result["attempts"] == 2, result
        assert result["agent"] == "steady"
        lines = [e for e in task_log(log) if plan_id(doc, e["task_id"]) == task]
        agents = [e["agent_id"].split(".")[0] if "agent_id" in e else None for e in lines]
        events = [e["event"] for e in lines]
        assert list(zip(events, agents, strict=True)) == [
            ("start", "mock"),
            ("start", "steady"),
            ("end", None),
        ]
        assert [e["attempt"] for e in lines] == [1, 2, 2]


def test_a_provider_refusal_moves_the_task_to_its_next_fallback_and_a_plain_failure_does_not(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.log"
    mock = [sys.executable, "-m", "aiswitch_adapters.mock"]
    refusing = {"MOCK_FAILURE_RATE": "1", "MOCK_PROVIDER_STATUS": "429"}
    agents_yaml(
        home,
        {
            "mock": {"env": refusing},
            "also-refusing": {"command": mock, "env": refusing, "env_passthrough": ["MOCK_*"]},
            "steady": {"command": mock, "env_passthrough": ["MOCK_*"]},
            "broken": {"command": mock, "env": {"MOCK_FAILURE_RATE": "1"}},
        },
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "defaults: {fallback: [also-refusing, steady]}\n"
        "tasks:\n"
        "  - {id: limited, agent: mock, prompt: x}\n"
        "  - {id: failing, agent: broken, prompt: x}\n"
    )
    done = run_cli("run", "--plan", str(plan), "--json", env={**env, "MOCK_TASK_LOG": str(log)})
    assert done.code == 7, done.stderr
    doc = done.json()
    results = by_task(doc)
    limited = results["limited"]
    # 429 on mock, 429 on the first fallback, ok on the second: three attempts.
    assert limited["status"] == "ok" and limited["attempts"] == 3
    assert limited["agent"] == "steady"
    starts = [
        e["agent_id"].split(".")[0]
        for e in task_log(log)
        if e["event"] == "start" and plan_id(doc, e["task_id"]) == "limited"
    ]
    assert starts == ["mock", "also-refusing", "steady"]
    # The agent itself failed it (no provider status): final, no failover, no retry.
    failing = results["failing"]
    assert failing["status"] == "failed" and failing["attempts"] == 1
    assert failing["agent"] == "broken"


def test_capabilities_an_adapter_advertised_at_its_handshake_route_later_plans(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    agents_yaml(
        home,
        {
            "linter": {
                "command": [sys.executable, "-m", "aiswitch_adapters.mock"],
                "env": {"MOCK_PROVIDES": "lint, style"},
            }
        },
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text("tasks:\n  - {id: check, capability: lint, prompt: x}\n")
    unknown = run_cli("run", "--plan", str(plan), env=env)
    assert unknown.code == 3 and "no agent has capability 'lint'" in unknown.stderr
    # Any run of the agent: its adapter says what it provides in agent.initialize.
    first = run_cli("run", "--agent", "linter", "hi", env=env)
    assert first.code == 0, first.stderr
    advertised = json.loads((home.state / "capabilities.json").read_text())
    assert advertised["agents"] == {"linter": ["lint", "style"]}
    done = run_cli("run", "--plan", str(plan), "--json", env=env)
    assert done.code == 0, done.stderr
    assert by_task(done.json())["check"]["agent"] == "linter"


def test_a_task_that_reaches_its_own_budget_gets_no_further_attempt(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "defaults: {agent: mock, options: {fail: true, cost_usd: '0.5'}}\n"
        "tasks:\n"
        "  - {id: capped, prompt: x, budget_usd: 0.1}\n"
        "  - {id: uncapped, prompt: y}\n"
    )
    done = run_cli("run", "--plan", str(plan), "--retry-failed", "--json", env=env)
    assert done.code == 1, done.stderr
    results = by_task(done.json())
    # --retry-failed retries a failed task twice more; the capped one spent its budget on
    # its first attempt.
    assert results["uncapped"]["attempts"] == 3
    capped = results["capped"]
    assert capped["attempts"] == 1 and capped["cost_usd"] == 0.5
    assert "reached its budget_usd $0.1" in capped["error"]


def test_a_plans_results_on_screen_are_named_by_task_and_say_why_one_was_skipped(
    env: dict[str, str], tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "defaults: {agent: mock}\n"
        "tasks:\n"
        "  - {id: first, prompt: a, options: {fail: true}}\n"
        "  - {id: second, prompt: b, depends_on: [first]}\n"
    )
    done = run_cli("run", "--plan", str(plan), env=env)
    assert done.code == 1  # none ok
    assert "first · mock#1" in done.stdout and "second · mock#1" in done.stdout
    assert "skipped: dependency first failed" in done.stdout
    assert "aiswitch: second (mock#1): skipped: dependency first failed" in done.stderr
