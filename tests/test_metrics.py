"""Run metrics: `state/metrics.json` written by runs (in batches), `metrics.report` from
adapters merged in, and `aiswitch metrics` over it."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from support.cli import assert_one_error_line, run_cli

from aiswitch.coordinator import metrics
from aiswitch.coordinator.coordinator import Coordinator
from aiswitch.coordinator.request import BatchItem, RunRequest
from aiswitch.coordinator.specs import parse_specs
from aiswitch.home import Home


def total(usage: dict) -> int:
    return sum(
        usage[k]
        for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    )


def metrics_file(home: Home) -> dict:
    return json.loads((home.state / "metrics.json").read_text())


def test_runs_record_their_metrics_and_aiswitch_metrics_sums_them(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    ok = run_cli(
        "run", "--parallel", "mock,mock@fast", "--json", "hi", cwd=tmp_path,
        env={**env, "MOCK_METRICS_REPORT": "1", "MOCK_CACHE_WRITE_TOKENS": "5"},
    )  # fmt: skip
    assert ok.code == 0, ok.stderr
    doc = ok.json()
    failed = run_cli("run", "--agent", "mock", "--json", "x", env={**env, "MOCK_FAILURE_RATE": "1"})
    assert failed.code == 1
    runs = metrics_file(home)["runs"]
    assert set(runs) == {doc["run_id"], failed.json()["run_id"]}
    entry = runs[doc["run_id"]]
    assert entry["status"] == "ok" and entry["mode"] == "parallel"
    assert entry["run"]["operations"] == 2 and entry["run"]["success_rate"] == 1.0
    assert entry["run"]["tokens"] == total(doc["usage"])
    assert entry["run"]["p95_response_s"] == doc["figures"]["p95_response_s"]
    agents = entry["agents"]
    assert set(agents) == {"mock.p1", "mock@fast.p1"}
    by_agent = {r["agent_id"]: r for r in doc["results"]}
    for agent_id, lane in (("mock.p1", "mock#1"), ("mock@fast.p1", "mock#2")):
        a = agents[agent_id]
        assert a["tasks"] == 1 and a["errors"] == 0
        assert a["tokens"] == total(by_agent[lane]["usage"])
        assert 0 < a["p50_response_s"] <= a["p95_response_s"]
        assert a["rss_peak"] > 0 and a["cpu_s"] > 0
        # The adapter's own counters (metrics.report), merged in.
        reported = a["reported"]
        assert reported["tasks_started"] == reported["tasks_ok"] == 1
        assert reported["running"] == 0
        assert reported["usage"]["cache_write_tokens"] == 5
    assert agents["mock@fast.p1"]["preset"] == "fast"
    bad = runs[failed.json()["run_id"]]
    assert bad["run"]["errors"] == 1 and bad["run"]["success_rate"] == 0.0
    assert "reported" not in bad["agents"]["mock.p1"]  # this adapter sent none

    done = run_cli("metrics", "--json", env=env)
    assert done.code == 0, done.stderr
    summary = done.json()["summary"]
    assert summary["runs"] == 2 and summary["operations"] == 3 and summary["succeeded"] == 2
    assert summary["success_rate"] == round(2 / 3, 4)
    assert summary["peak_concurrency"] == 2
    assert summary["p95_response_s"] is not None and summary["operations_per_s"] > 0
    text = run_cli("metrics", env=env)
    assert text.stdout.splitlines()[0].startswith("2 runs · 3 operations · 66.7% ok · avg ")
    one = run_cli("metrics", "--run", doc["run_id"], env=env)
    assert one.code == 0
    lines = one.stdout.splitlines()
    assert lines[0].startswith("1 run · 2 operations · 100.0% ok")
    assert f"p95 {doc['figures']['p95_response_s']:.2f}s" in lines[0]
    assert lines[2].split()[:4] == ["agent", "preset", "tasks", "errors"]
    assert [line.split()[0] for line in lines[3:]] == ["mock.p1", "mock@fast.p1"]


def test_a_corrupt_or_foreign_metrics_file_is_one_line_and_disturbs_nothing(
    env: dict[str, str], home: Home
) -> None:
    assert run_cli("run", "--agent", "mock", "hi", env=env).code == 0
    ledger = home.ledger.read_bytes()
    path = home.state / "metrics.json"
    path.write_text('{"runs": {"x": ')
    done = run_cli("metrics", env=env)
    assert_one_error_line(done, "metrics.json was not valid JSON; moved it to", code=4)
    aside = [p for p in home.state.iterdir() if p.name.startswith("metrics.json.")]
    assert len(aside) == 1 and aside[0].read_text() == '{"runs": {"x": '
    path.write_text('["not", "metrics"]')
    assert_one_error_line(run_cli("metrics", "--json", env=env), "is not a metrics file", code=4)
    assert path.read_text() == '["not", "metrics"]'
    assert home.ledger.read_bytes() == ledger
    assert run_cli("runs", "list", "--json", env=env).code == 0
    path.unlink()
    assert_one_error_line(run_cli("metrics", "--run", "nope", env=env), "is not a run id", code=2)
    assert_one_error_line(
        run_cli("metrics", "--run", "20261204T000000Z-000000", env=env), "no metrics of run"
    )


async def test_a_running_run_writes_its_metrics_in_batches(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a run goes on, its entry is rewritten each FLUSH_S (if anything changed)."""
    monkeypatch.setattr(metrics, "FLUSH_S", 0.05)
    written: asyncio.Queue[dict] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    write = metrics.RunMetrics._write

    def spy(self: metrics.RunMetrics, entry: dict) -> None:
        write(self, entry)
        loop.call_soon_threadsafe(written.put_nowait, entry)

    monkeypatch.setattr(metrics.RunMetrics, "_write", spy)
    env = {**os.environ, "MOCK_LATENCY": "0", "MOCK_STEPS": "0"}
    coordinator = Coordinator(home, parent_env=env)
    items = [BatchItem(prompt="quick"), BatchItem(prompt="slow", options={"hang": True})]
    request = RunRequest(mode="batch", specs=parse_specs("mock"), prompt="", batch=items)
    run = coordinator.new_run(request, coordinator.plan(request))
    async with asyncio.timeout(30):
        running = asyncio.create_task(run.execute())
        # Batches written while the run runs, until one has the quick task done.
        first = await written.get()
        while first["run"]["tasks"] == 0:
            assert first["ended_at"] is None
            first = await written.get()
        assert first["ended_at"] is None and first["status"] == "running"
        # On whichever process of the pool ran it (it may have started a second one).
        assert first["run"]["tasks"] == 1
        assert sum(a["tasks"] for a in first["agents"].values()) == 1, first["agents"]
        assert metrics_file(home)["runs"][run.run_id]["ended_at"] is None
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    last = metrics_file(home)["runs"][run.run_id]
    assert last["status"] == "cancelled" and last["ended_at"] is not None
