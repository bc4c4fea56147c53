"""Coordination beyond one task per child: sequential steps on per-preset pools, budgets."""

from __future__ import annotations

import json

from support.cli import run_cli

from aiswitch.home import Home
from aiswitch.tokens.records import LedgerRecord


def test_sequential_steps_with_other_presets_run_on_their_own_pools(
    env: dict[str, str], home: Home
) -> None:
    env["MOCK_DUMP_ENV"] = "1"
    out = run_cli("run", "--sequential", "mock@fast,mock@slow", "x", "--json", env=env)
    assert out.code == 0, out.stderr
    results = out.json()["results"]
    step1 = json.loads(results[0]["output"])
    # The second step's prompt carries the first's output; its own output is its env.
    step2 = json.loads(results[1]["output"])
    assert step1["AISWITCH_PRESET"] == "fast" and step1["MOCK_LATENCY"] == "0"
    assert step2["AISWITCH_PRESET"] == "slow" and step2["MOCK_LATENCY"] == "2.5-4"
    assert step2["AISWITCH_AGENT_ID"] == "mock@slow.p1"
    assert "MOCK_STEPS" in step2 and step2["MOCK_STEPS"] == "6"
    # Processes with different presets never share a pool: each has its own log.
    run_logs = home.agent_logs / out.json()["run_id"]
    assert (run_logs / "mock@fast.p1.log").exists()
    assert (run_logs / "mock@slow.p1.log").exists()


def test_a_step_whose_preset_changes_a_start_time_setting_gets_a_fresh_child(
    env: dict[str, str], home: Home
) -> None:
    # MOCK_EXIT_AT_START is read only when a mock starts: the second step's preset must
    # reach a process started with it, not a reused one switched with env.switch.
    home.ensure()
    (home.config / "presets.yaml").write_text(
        "version: 1\npresets:\n  dies:\n    variables: {MOCK_EXIT_AT_START: '4'}\n"
    )
    out = run_cli("run", "--sequential", "mock@fast,mock@dies", "x", "--json", env=env)
    first, second = out.json()["results"]
    assert first["status"] == "ok"
    assert second["status"] == "failed"
    assert "exited with code 4" in second["error"]


def test_a_switch_removes_the_variables_of_the_previous_preset(
    env: dict[str, str], home: Home
) -> None:
    env["MOCK_DUMP_ENV"] = "1"
    out = run_cli("run", "--sequential", "mock@slow,mock@fast", "x", "--json", env=env)
    step2 = json.loads(out.json()["results"][1]["output"])
    assert step2["AISWITCH_PRESET"] == "fast"
    assert "MOCK_CACHE_READ_TOKENS" not in step2  # set by slow, not by fast
    assert "MOCK_MODEL" not in step2


def test_a_token_budget_cancels_running_tasks_and_ends_the_run_budget_exceeded(
    env: dict[str, str], home: Home
) -> None:
    # One agent spends at once; the other is still working when the budget is crossed.
    env["MOCK_INPUT_TOKENS"] = "600"
    env["MOCK_OUTPUT_TOKENS"] = "0"
    out = run_cli(
        "run",
        "--parallel",
        "mock@fast,mock",
        "x",
        "--budget-tokens",
        "500",
        "--json",
        env={**env, "MOCK_LATENCY": "30", "MOCK_STEPS": "1"},
    )
    doc = out.json()
    assert out.code == 8
    assert doc["status"] == "budget_exceeded"
    fast, slow = doc["results"]
    assert fast["status"] == "ok"
    assert slow["status"] == "cancelled"
    assert "budget" in slow["error"]
    assert slow["duration_s"] < 20
    spent = [
        LedgerRecord.model_validate_json(line).model_dump()
        for line in home.ledger.read_text().splitlines()
    ]
    assert sum(r["input_tokens"] for r in spent) == doc["usage"]["input_tokens"] == 600


def test_a_usd_budget_uses_the_reported_cost_and_stops_later_sequential_steps(
    env: dict[str, str],
) -> None:
    env["MOCK_COST_USD"] = "0.75"
    out = run_cli(
        "run", "--sequential", "mock,mock,mock", "x", "--budget-usd", "1", "--json", env=env
    )
    doc = out.json()
    assert doc["status"] == "budget_exceeded"
    assert [r["status"] for r in doc["results"]] == ["ok", "ok", "cancelled"]
    assert doc["results"][2]["error"] == "not started: the run's budget was exceeded"
    assert doc["cost_usd"] == 1.5


def test_costs_are_calculated_from_the_price_table_when_the_cli_reports_none(
    env: dict[str, str], home: Home
) -> None:
    home.ensure()
    (home.config / "prices.yaml").write_text("models:\n  mock-1: {input: 2.0, output: 10.0}\n")
    env["MOCK_INPUT_TOKENS"] = "1000000"
    env["MOCK_OUTPUT_TOKENS"] = "100000"
    doc = run_cli("run", "--agent", "mock", "x", "--json", env=env).json()
    assert doc["results"][0]["cost_usd"] == 3.0
    (record,) = [
        LedgerRecord.model_validate_json(line).model_dump()
        for line in home.ledger.read_text().splitlines()
    ]
    assert record["cost_source"] == "calculated"
    assert record["cost_usd"] == 3.0


def test_a_crashing_sequential_step_leaves_no_entry_in_agents_json_and_no_lock_per_run(
    env: dict[str, str], home: Home
) -> None:
    out = run_cli("run", "--sequential", "mock,mock@crashy,mock", "x", "--json", env=env)
    statuses = [r["status"] for r in out.json()["results"]]
    assert statuses == ["ok", "failed", "ok"], out.stderr
    assert json.loads((home.state / "agents.json").read_text())["agents"] == {}
    run_cli("run", "--agent", "mock", "again", "--json", env=env)
    # One lock for all run files: nothing per run piles up under locks/.
    assert not [p.name for p in home.locks.iterdir() if p.name.startswith("run-")]
