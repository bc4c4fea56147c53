"""Our Claude-log totals equal ccusage's own, per day and model, in several timezones.

ccusage 20.0.24 runs offline (`-O`) from the test cache (scripts/setup/ccusage.sh); if it is
missing these tests fail with the command to run, they never skip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.ccusage import ccusage_daily
from support.claude_logs import LogSetSpec, write_claude_logs

from aiswitch.home import Home
from aiswitch.tokens.report_options import parse_report_options
from aiswitch.tokens.sources import report_for_source

TIMEZONES = ("UTC", "Asia/Tokyo", "America/Los_Angeles")


def _ours(config_dir: Path, tmp: Path, timezone: str, use_cache: bool) -> dict[str, Any]:
    report = report_for_source(
        "claude",
        Home(tmp / "aiswitch-home"),
        parse_report_options(by="day,model", timezone=timezone),
        env={"CLAUDE_CONFIG_DIR": str(config_dir), "HOME": str(tmp)},
        use_cache=use_cache,
    )
    days: dict[str, Any] = {}
    for row in report.rows:
        day = days.setdefault(row["day"], {"totals": [0, 0, 0, 0], "models": {}})
        counts = [
            row["input_tokens"],
            row["output_tokens"],
            row["cache_write_tokens"],
            row["cache_read_tokens"],
        ]
        day["totals"] = [a + b for a, b in zip(day["totals"], counts, strict=True)]
        day["models"][row["model"]] = (counts, row["cost_usd"])
    return days


def _assert_same_as_ccusage(config_dir: Path, tmp: Path, timezone: str, use_cache: bool) -> None:
    theirs = ccusage_daily(config_dir, tmp, timezone)
    ours = _ours(config_dir, tmp, timezone, use_cache)
    assert theirs["daily"], "the log set must produce usage"
    assert sorted(ours) == sorted(day["date"] for day in theirs["daily"])
    for day in theirs["daily"]:
        mine = ours[day["date"]]
        expected = [
            day["inputTokens"],
            day["outputTokens"],
            day["cacheCreationTokens"],
            day["cacheReadTokens"],
        ]
        assert mine["totals"] == expected, (timezone, day["date"])
        for breakdown in day["modelBreakdowns"]:
            counts, cost = mine["models"][breakdown["modelName"]]
            assert counts == [
                breakdown["inputTokens"],
                breakdown["outputTokens"],
                breakdown["cacheCreationTokens"],
                breakdown["cacheReadTokens"],
            ], (timezone, day["date"], breakdown["modelName"])
            assert cost == pytest.approx(breakdown["cost"], rel=1e-9, abs=1e-9)


@pytest.fixture(scope="module")
def generated_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("claude-config")
    stats = write_claude_logs(root, LogSetSpec(files=30, assistant_lines=3_000, days=5))
    assert stats.malformed_lines > 0
    return root


@pytest.fixture(params=[1, 2], ids=["one-process", "two-workers"])
def workers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Both ways a report reads Claude logs: in this process, or in forked workers (taken
    for big log sets; forced here)."""
    from aiswitch.tokens.sources import claude_parallel

    count: int = request.param
    monkeypatch.setattr(claude_parallel, "workers_for", lambda sizes: count)
    return count


@pytest.mark.parametrize("timezone", TIMEZONES)
def test_per_day_and_model_totals_and_costs_equal_ccusage(
    generated_logs: Path, tmp_path: Path, timezone: str, workers: int
) -> None:
    _assert_same_as_ccusage(generated_logs, tmp_path, timezone, use_cache=False)


def test_logs_of_claude_code_2_0_only_equal_ccusage_too(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, workers: int
) -> None:
    root = tmp_path_factory.mktemp("claude-legacy")
    write_claude_logs(root, LogSetSpec(files=12, assistant_lines=1_200, days=3, legacy=True))
    _assert_same_as_ccusage(root, tmp_path, "UTC", use_cache=False)


def test_a_warm_index_gives_the_same_totals_as_ccusage(
    generated_logs: Path, tmp_path: Path, workers: int
) -> None:
    _ours(generated_logs, tmp_path, "Asia/Tokyo", use_cache=True)  # fills the index
    _assert_same_as_ccusage(generated_logs, tmp_path, "Asia/Tokyo", use_cache=True)


def _line(**fields: Any) -> str:
    base: dict[str, Any] = {
        "timestamp": "2026-01-05T23:30:00.000Z",
        "sessionId": "s1",
        "version": "2.0.37",
        "type": "assistant",
        "requestId": "req_1",
        "message": {
            "id": "msg_1",
            "model": "claude-sonnet-4-5-20250929",
            "usage": {"input_tokens": 10, "output_tokens": 1},
        },
    }
    for key, value in fields.items():
        if key in ("id", "model", "usage"):
            if value is None:
                base["message"].pop(key, None)
            else:
                base["message"][key] = value
        elif value is None:
            base.pop(key, None)
        else:
            base[key] = value
    return json.dumps(base, separators=(",", ":"))


def test_edge_cases_of_duplicates_sidechains_and_bad_fields_count_as_ccusage_counts_them(
    tmp_path: Path, workers: int
) -> None:
    config = tmp_path / "claude"
    files = {
        "a/s1.jsonl": [
            _line(usage={"input_tokens": 1, "output_tokens": 1}),
            _line(usage={"input_tokens": 100, "output_tokens": 1}),  # same ids, larger: kept
            _line(requestId="req_2", isSidechain=True),  # sidechain replay: dropped
            _line(requestId=None, id="msg_x"),
            _line(requestId=None, id="msg_x"),  # same instant and session: duplicate
            _line(requestId=None, id="msg_x", timestamp="2026-01-06T00:30:00Z"),  # kept
            _line(id=None),
            _line(id=None),  # no message id: never a duplicate
            _line(id="msg_s", model="<synthetic>", requestId="req_s"),
            _line(id="msg_v", version="abc"),  # not a version: skipped
            _line(id="msg_n", cwd=None, requestId="req_n") + "",
            _line(id="msg_e", requestId=""),  # empty request id: skipped
            _line(
                id="msg_f",
                requestId="req_f",
                usage={"input_tokens": 7, "output_tokens": 1, "speed": "fast"},
            ),
            '{"timestamp":"2026-01-05T01:00:00Z","message":{"usage":{"input_tokens":5}',
            "not json at all",
        ],
        "b/s2.jsonl": [
            _line(sessionId="s2"),  # same ids in another session and file: duplicate
            _line(
                sessionId="s2",
                id="msg_z",
                requestId="req_z",
                isSidechain=True,
                timestamp="2026-01-05T15:00:00+09:00",
            ),
        ],
    }
    for name, lines in files.items():
        path = config / "projects" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    # A null non-nullable field anywhere in the line makes ccusage skip the line.
    null_line = _line(id="msg_null", requestId="req_null").replace('"type"', '"cwd":null,"type"')
    with (config / "projects" / "a" / "s1.jsonl").open("a") as handle:
        handle.write(null_line + "\n")
    for timezone in ("UTC", "Asia/Tokyo"):
        _assert_same_as_ccusage(config, tmp_path, timezone, use_cache=False)
