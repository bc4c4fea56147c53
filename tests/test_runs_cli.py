"""`aiswitch runs list|show|rerun|rm`: past runs, through the installed console script."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from support.cli import assert_one_error_line, run_cli

from aiswitch.home import Home

MOCK = [sys.executable, "-m", "aiswitch_adapters.mock"]


def agents_yaml(home: Home, agents: dict[str, Any]) -> None:
    home.ensure()
    (home.config / "agents.yaml").write_text(json.dumps({"agents": agents}))


def started_tasks(log: Path) -> list[str]:
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    # The mock's agent id is its process's (`flaky.p1`): the agent's name comes first.
    return [e["agent_id"].split(".")[0] for e in lines if e["event"] == "start"]


def test_runs_list_shows_every_run_newest_first_and_filters_them(env: dict[str, str]) -> None:
    first = run_cli("run", "-p", "mock,mock", "one", "--json", env=env).json()
    failed = run_cli("run", "-a", "mock", "two", "--json", env={**env, "MOCK_FAILURE_RATE": "1"})
    second = failed.json()
    listed = run_cli("runs", "list", "--json", env=env).json()["runs"]
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    assert listed[1]["status"] == "ok" and listed[1]["agents"] == ["mock#1", "mock#2"]
    assert (
        listed[1]["total_tokens"]
        == first["usage"]["input_tokens"] + first["usage"]["output_tokens"]
    )
    only_failed = run_cli("runs", "list", "--status", "failed", "--json", env=env).json()
    assert [r["run_id"] for r in only_failed["runs"]] == [second["run_id"]]
    newest = run_cli("runs", "list", "--limit", "1", "--json", env=env).json()
    assert [r["run_id"] for r in newest["runs"]] == [second["run_id"]]
    future = run_cli("runs", "list", "--since", "2999-01-01", "--json", env=env).json()
    assert future["runs"] == []
    table = run_cli("runs", "list", env=env)
    assert table.code == 0
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "run", "mode", "status", "agents", "tokens", "cost", "started", "duration"
    ]  # fmt: skip
    assert rows[0].split()[:3] == [second["run_id"], "single", "failed"]
    assert rows[1].split()[:4] == [first["run_id"], "parallel", "ok", "mock#1,mock#2"]


def test_runs_show_json_is_exactly_what_run_json_printed(env: dict[str, str]) -> None:
    done = run_cli("run", "-p", "mock,mock@fast", "say it twice", "--json", env=env)
    run_id = done.json()["run_id"]
    shown = run_cli("runs", "show", run_id, "--json", env=env)
    assert shown.code == 0
    assert shown.stdout == done.stdout


def test_runs_show_prints_the_panels_again_and_output_prints_each_output_whole(
    env: dict[str, str],
) -> None:
    env["MOCK_OUTPUT"] = "first line\nlast line of {prompt}"
    run_id = run_cli("run", "-p", "mock,mock", "x", "--json", env=env).json()["run_id"]
    panels = run_cli("runs", "show", run_id, env=env)
    assert panels.code == 0
    assert "mock#1" in panels.stdout and "mock#2" in panels.stdout
    assert f"run {run_id} ok" in panels.stdout
    outputs = run_cli("runs", "show", run_id, "--output", env=env)
    assert outputs.stdout == (
        "== mock#1 (ok) ==\nfirst line\nlast line of x\n"
        "== mock#2 (ok) ==\nfirst line\nlast line of x\n"
    )


def test_rerun_failed_runs_only_the_failed_tasks_under_a_new_run_id(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.log"
    env["MOCK_TASK_LOG"] = str(log)
    steady = {"command": MOCK, "env_passthrough": ["MOCK_*"]}
    failing = {**steady, "env": {"MOCK_FAILURE_RATE": "1"}}
    agents_yaml(home, {"steady": steady, "flaky": failing})
    first = run_cli("run", "-p", "steady,flaky", "do it", "--json", env=env)
    assert first.code == 7, first.stderr  # partial
    run_id = first.json()["run_id"]
    assert sorted(started_tasks(log)) == ["flaky", "steady"]
    # The flaky agent is mended; only its task runs again.
    agents_yaml(home, {"steady": steady, "flaky": steady})
    log.unlink()
    again = run_cli("runs", "rerun", run_id, "--failed", "--json", env=env)
    assert again.code == 0, again.stderr
    doc = again.json()
    assert doc["run_id"] != run_id
    assert started_tasks(log) == ["flaky"]
    steady, flaky = doc["results"]
    assert steady["status"] == "ok" and steady["attempts"] == 0
    assert steady["output"] == first.json()["results"][0]["output"]
    assert flaky["status"] == "ok" and flaky["attempts"] == 1
    # This run's usage is what it spent: the flaky task's only.
    assert doc["usage"] == flaky["usage"]
    whole = run_cli("runs", "rerun", run_id, "--json", env=env)
    assert whole.code == 0
    assert [r["attempts"] for r in whole.json()["results"]] == [1, 1]
    refused = run_cli("runs", "rerun", doc["run_id"], "--failed", env=env)
    assert_one_error_line(refused, "has no failed task")


def test_runs_rm_forgets_a_run_and_bad_run_ids_are_one_line(
    env: dict[str, str], home: Home
) -> None:
    run_id = run_cli("run", "-a", "mock", "x", "--json", env=env).json()["run_id"]
    assert (home.runs / f"{run_id}.json").exists()
    removed = run_cli("runs", "rm", run_id, env=env)
    assert removed.code == 0, removed.stderr
    assert not (home.runs / f"{run_id}.json").exists()
    assert not (home.runs / f"{run_id}.jsonl").exists()
    assert run_cli("runs", "list", "--json", env=env).json()["runs"] == []
    for args in (
        ("runs", "show", run_id),
        ("runs", "rm", run_id),
        ("runs", "rerun", run_id),
    ):
        assert_one_error_line(run_cli(*args, env=env), f"no run '{run_id}'", code=2)
    for bad in ("../../etc/passwd", "nope"):
        assert_one_error_line(run_cli("runs", "show", bad, env=env), "is not a run id", code=2)
    assert_one_error_line(run_cli("runs", "list", "--status", "done", env=env), "unknown status")
