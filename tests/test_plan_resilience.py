"""Plans through crashes and a coordinator killed with SIGKILL: a 200-task plan with 5 %
crashes ends every task once with the ledger equal to what the mocks reported; a killed
plan resumed runs only its unfinished tasks and feeds their dependants the recorded
outputs; a plan file changed since the kill is refused. Real processes throughout."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.cli import aiswitch_bin, run_cli
from test_run_resilience import (
    BATCH_TIMEOUT_S,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    assert_no_child_left,
    run_records,
    task_log,
    task_of,
)

from aiswitch.home import Home

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MOCK = [sys.executable, "-m", "aiswitch_adapters.mock"]


def agents_yaml(home: Home, names: list[str], **env: str) -> None:
    home.ensure()
    settings = {
        "env": {
            "MOCK_STEPS": "0",
            "MOCK_INPUT_TOKENS": str(INPUT_TOKENS),
            "MOCK_OUTPUT_TOKENS": str(OUTPUT_TOKENS),
            "MOCK_MAX_CONCURRENT": "5",
            **env,
        },
        "capabilities": ["work"],
        "pool": {"min": 0, "max": 10, "idle_timeout": 60},
        "start_retries": 5,
    }
    agents = {name: dict(settings, command=MOCK) if name != "mock" else settings for name in names}
    (home.config / "agents.yaml").write_text(json.dumps({"agents": agents}))


def chains_plan(path: Path, chains: int, length: int, **task: Any) -> None:
    """`chains` chains of `length` steps; each step's prompt holds its predecessor's output."""
    tasks = []
    for chain in range(chains):
        for step in range(length):
            entry: dict[str, Any] = {"id": f"c{chain}-{step}", **task}
            if step == 0:
                entry["prompt"] = f"chain {chain} begins"
            else:
                before = f"c{chain}-{step - 1}"
                entry["depends_on"] = [before]
                entry["prompt"] = f"step {step} after [{{{before}.output}}]"
            tasks.append(entry)
    path.write_text(
        json.dumps({"defaults": {"options": {"output": "did: {prompt}"}}, "tasks": tasks})
    )


def assert_fed_right(results: list[dict[str, Any]]) -> None:
    """Every step's prompt holds exactly the output its predecessor's result records."""
    by_id = {r["id"]: r for r in results}
    for result in results:
        for dep in result["depends_on"]:
            step = result["id"].split("-")[1]
            assert result["prompt"] == f"step {step} after [{by_id[dep]['output']}]"


def test_a_200_task_plan_with_5_percent_crashes_ends_each_task_once_ledger_as_mocks_said(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.log"
    agents_yaml(
        home,
        ["mock", "other"],
        MOCK_LATENCY="0.02-0.1",
        MOCK_CRASH_RATE="0.05",
        MOCK_TASK_LOG=str(log),
    )
    plan = tmp_path / "plan.json"
    chains_plan(plan, 40, 5, capability="work", retries=4)
    out = run_cli(
        "run",
        "--plan",
        str(plan),
        "--jsonl",
        "--concurrency",
        "40",
        env=env,
        timeout=BATCH_TIMEOUT_S,
    )
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    task_lines = [line for line in lines if line["type"] == "task"]
    run = lines[-1]
    assert run["type"] == "run" and run["tasks"] == 200
    assert len(task_lines) == 200
    assert len({line["task_id"] for line in task_lines}) == 200
    statuses = Counter(line["status"] for line in task_lines)
    assert set(statuses) <= {"ok", "failed", "skipped"}
    assert statuses["ok"] >= 190, (statuses, out.stderr[-2000:])
    assert any(line["attempts"] > 1 for line in task_lines), "crashes should move some task"
    doc = json.loads((home.runs / f"{run['run_id']}.json").read_text())
    assert_fed_right([r for r in doc["results"] if r["status"] == "ok"])
    # The mocks' log: each ok task's recorded attempt ended ok there.
    events = task_log(log)
    ok_attempts = {
        (task_of(e["task_id"]), e["attempt"])
        for e in events
        if e["event"] == "end" and e["status"] == "ok"
    }
    for line in task_lines:
        if line["status"] == "ok":
            assert (line["task_id"], line["attempts"]) in ok_attempts
    # The ledger: one record per attempt that ended ok in the mocks' log, none twice, and
    # the run's totals equal to it.
    records = run_records(home, run["run_id"])
    keys = Counter((r["task_id"], r.get("attempt")) for r in records)
    assert set(keys.values()) == {1}
    assert set(keys) == ok_attempts
    assert run["usage"]["input_tokens"] == len(ok_attempts) * INPUT_TOKENS
    assert run["usage"]["output_tokens"] == len(ok_attempts) * OUTPUT_TOKENS
    assert_no_child_left(home)


def kill_after(args: list[str], env: dict[str, str], lines: int) -> str:
    """Start `aiswitch ARGS --jsonl`, SIGKILL it after `lines` task lines; its run id."""
    proc = subprocess.Popen(
        [aiswitch_bin(), *args, "--jsonl"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen = []
        while len(seen) < lines:
            line = proc.stdout.readline()
            assert line, "aiswitch ended before it was killed"
            seen.append(json.loads(line))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=BATCH_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return str(seen[0]["task_id"].split("/")[0])


def test_a_plan_killed_with_sigkill_resumes_its_unfinished_tasks_only_with_the_recorded_outputs(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.log"
    agents_yaml(home, ["mock"], MOCK_LATENCY="0.05-0.3", MOCK_TASK_LOG=str(log))
    plan = tmp_path / "plan.json"
    chains_plan(plan, 10, 10, agent="mock")
    run_id = kill_after(["run", "--plan", str(plan), "--concurrency", "10"], env, 30)
    assert_no_child_left(home)
    logged_at_kill = len(task_log(log))
    # What the killed run recorded as finished (its journal): these must never run again.
    journal = home.runs / f"{run_id}.jsonl"
    finished_before = {json.loads(line)["task_id"] for line in journal.read_text().splitlines()}
    assert len(finished_before) >= 30

    resumed = run_cli("runs", "resume", run_id, "--jsonl", env=env, timeout=BATCH_TIMEOUT_S)
    assert resumed.code == 0, resumed.stderr
    last = json.loads(resumed.stdout.splitlines()[-1])
    assert last["type"] == "run" and last["status"] == "ok" and last["run_id"] == run_id
    final = json.loads((home.runs / f"{run_id}.json").read_text())
    assert final["mode"] == "plan"
    assert Counter(r["status"] for r in final["results"]) == {"ok": 100}
    # Dependants of tasks finished before the kill got those tasks' recorded outputs.
    assert_fed_right(final["results"])
    events = [e for e in task_log(log) if task_of(e["task_id"]).startswith(run_id)]
    rerun = {task_of(e["task_id"]) for e in events[logged_at_kill:] if e["event"] == "start"}
    # Only the unfinished tasks ran again, and together they are the whole plan.
    assert rerun and not rerun & finished_before
    assert len(rerun) + len(finished_before) == 100
    # Each task ended ok once in total, but a task whose reply was still on its way when
    # aiswitch died (not finished for aiswitch): it ran again, at most those in flight.
    ok_ends = Counter(
        task_of(e["task_id"]) for e in events if e["event"] == "end" and e["status"] == "ok"
    )
    assert set(ok_ends) == {r["task_id"] for r in final["results"]}
    twice = {task for task, n in ok_ends.items() if n > 1}
    assert twice <= rerun and len(twice) <= 10
    # Resuming again has nothing to do.
    again = run_cli("runs", "resume", run_id, env=env)
    assert again.code == 2 and "no unfinished task" in again.stderr
    assert_no_child_left(home)


def test_a_plan_file_changed_since_the_kill_is_refused_and_nothing_runs(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.log"
    agents_yaml(home, ["mock"], MOCK_LATENCY="0", MOCK_TASK_LOG=str(log))
    plan = tmp_path / "plan.yaml"
    text = (
        "defaults: {agent: mock}\n"
        "tasks:\n"
        "  - {id: quick, prompt: q}\n"
        "  - {id: slow, prompt: 's {quick.output}', depends_on: [quick],"
        " options: {latency: '2'}}\n"
    )
    plan.write_text(text)
    run_id = kill_after(["run", "--plan", str(plan)], env, 1)
    plan.write_text(text.replace("prompt: q", "prompt: changed"))
    logged = len(task_log(log))
    refused = run_cli("runs", "resume", run_id, env=env)
    assert refused.code == 2 and refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert len(lines) == 1 and "changed since the run started" in lines[0], refused.stderr
    assert str(plan) in lines[0]
    assert len(task_log(log)) == logged  # nothing started
    index = {r["run_id"]: r for r in json.loads((home.state / "tasks.json").read_text())["runs"]}
    assert index[run_id]["status"] == "interrupted"
    # As it was, it resumes.
    plan.write_text(text)
    done = run_cli("runs", "resume", run_id, "--json", env=env)
    assert done.code == 0, done.stderr
    results = {r["id"]: r for r in done.json()["results"]}
    assert results["slow"]["prompt"] == f"s {results['quick']['output']}"
