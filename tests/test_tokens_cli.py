"""`aiswitch tokens …` end to end through the installed console script: reports, export,
import, prune, and bad input."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from support.cli import assert_one_error_line, run_cli

from aiswitch.home import Home
from aiswitch.tokens.ledger import ledger_line
from aiswitch.tokens.records import LedgerRecord

COUNTERS = {
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "unpriced_requests",
    "requests",
}
PRICED_MODEL = "claude-sonnet-4-5-20250929"


def rec(ts: str, **fields: Any) -> LedgerRecord:
    base: dict[str, Any] = {
        "agent": "claude",
        "preset": "default",
        "model": PRICED_MODEL,
        "run_id": "run-1",
        "session_id": "s-1",
        "input_tokens": 100,
        "output_tokens": 10,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 50,
    }
    base.update(fields)
    return LedgerRecord(ts=datetime.fromisoformat(ts.replace("Z", "+00:00")), **base)


def write_ledger(home: Home, records: list[LedgerRecord], *, raw: bytes = b"") -> None:
    home.ledger.parent.mkdir(parents=True, exist_ok=True)
    with home.ledger.open("ab") as out:
        for record in records:
            out.write(ledger_line(record) + b"\n")
        out.write(raw)


def sample(home: Home) -> None:
    write_ledger(
        home,
        [
            rec("2026-05-01T10:00:00Z", message_id="m1", request_id="r1"),
            rec("2026-05-01T11:00:00Z", agent="codex", model="gpt-5-codex", run_id="run-2"),
            rec("2026-05-02T09:00:00Z", preset="kimi", model="kimi-k2-0905-preview"),
            rec("2026-05-01T23:30:00Z", agent="codex", model="gpt-5-codex", run_id="run-2"),
        ],
    )


def report(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = run_cli("tokens", "report", *args, "--json", env=env)
    assert done.code == 0, done.stderr
    data: dict[str, Any] = done.json()
    return data


# --- reports -------------------------------------------------------------------------------


def test_json_rows_have_one_field_per_by_key_the_counters_and_totals_the_same_counters(
    home: Home, env: dict[str, str]
) -> None:
    sample(home)
    data = report(env, "--by", "day,agent", "--timezone", "UTC")
    assert data["by"] == ["day", "agent"]
    for row in data["rows"]:
        assert set(row) == {"day", "agent", *COUNTERS, "api_equivalent_usd"}
    assert set(data["totals"]) == COUNTERS
    assert [(r["day"], r["agent"]) for r in data["rows"]] == [
        ("2026-05-01", "claude"),
        ("2026-05-01", "codex"),
        ("2026-05-02", "claude"),
    ]
    assert data["totals"]["requests"] == 4
    assert data["totals"]["input_tokens"] == 400
    assert data["totals"]["total_tokens"] == 4 * (100 + 10 + 1000 + 50)
    assert data["totals"]["cost_usd"] > 0


@pytest.mark.parametrize("key", ["week", "month", "preset", "model", "provider", "run", "session"])
def test_every_by_key_names_its_field_after_itself(
    home: Home, env: dict[str, str], key: str
) -> None:
    sample(home)
    data = report(env, "--by", key, "--timezone", "UTC")
    assert all(key in row for row in data["rows"])
    assert sum(row["requests"] for row in data["rows"]) == 4
    if key == "month":
        assert [row["month"] for row in data["rows"]] == ["2026-05"]
    if key == "week":
        assert [row["week"] for row in data["rows"]] == ["2026-W18"]


def test_csv_has_a_header_one_line_per_row_and_a_total_line(
    home: Home, env: dict[str, str]
) -> None:
    sample(home)
    done = run_cli("tokens", "report", "--by", "agent", "--csv", env=env)
    assert done.code == 0, done.stderr
    lines = list(csv.reader(io.StringIO(done.stdout)))
    assert lines[0][:3] == ["agent", "input_tokens", "output_tokens"]
    assert [line[0] for line in lines[1:]] == ["claude", "codex", "TOTAL"]
    assert lines[-1][1] == "400"


def test_filters_by_agent_preset_model_run_and_dates(home: Home, env: dict[str, str]) -> None:
    sample(home)
    tz = ("--timezone", "UTC")
    assert report(env, "--agent", "codex", *tz)["totals"]["requests"] == 2
    assert report(env, "--preset", "kimi", *tz)["totals"]["requests"] == 1
    # A dated model id is matched by its undated name too.
    assert report(env, "--model", "claude-sonnet-4-5", *tz)["totals"]["requests"] == 1
    assert report(env, "--run", "run-2", *tz)["totals"]["requests"] == 2
    assert report(env, "--agent", "claude,codex", *tz)["totals"]["requests"] == 4
    assert report(env, "--since", "2026-05-02", *tz)["totals"]["requests"] == 1
    assert report(env, "--until", "20260501", *tz)["totals"]["requests"] == 3


def test_days_are_taken_in_the_report_timezone(home: Home, env: dict[str, str]) -> None:
    write_ledger(home, [rec("2026-05-01T23:30:00Z")])
    assert report(env, "--timezone", "UTC")["rows"][0]["day"] == "2026-05-01"
    tokyo = report(env, "--timezone", "Asia/Tokyo")
    assert tokyo["rows"][0]["day"] == "2026-05-02" and tokyo["timezone"] == "Asia/Tokyo"
    assert report(env, "--timezone", "America/New_York")["rows"][0]["day"] == "2026-05-01"


def test_the_shortcuts_are_reports_by_day_month_and_session(
    home: Home, env: dict[str, str]
) -> None:
    sample(home)
    for name, by in (("daily", "day"), ("monthly", "month"), ("session", "session")):
        done = run_cli("tokens", name, "--json", "--timezone", "UTC", env=env)
        assert done.code == 0, done.stderr
        assert done.json()["rows"] == report(env, "--by", by, "--timezone", "UTC")["rows"]


def test_the_table_has_a_totals_row_and_says_where_prices_are_missing(
    home: Home, env: dict[str, str]
) -> None:
    write_ledger(home, [rec("2026-05-01T10:00:00Z", model="no-such-model")])
    done = run_cli("tokens", "report", "--by", "agent", env={**env, "COLUMNS": "200"})
    assert done.code == 0, done.stderr
    assert "Total" in done.stdout and "unpriced" in done.stdout
    assert "$0." not in done.stdout.replace("as $0).", "")


def test_a_real_run_is_reported_per_run_and_agent_as_its_own_usage(
    home: Home, env: dict[str, str]
) -> None:
    run_env = {**env, "MOCK_INPUT_TOKENS": "1234", "MOCK_OUTPUT_TOKENS": "56"}
    done = run_cli("run", "--agent", "mock", "count my tokens", "--json", env=run_env)
    assert done.code == 0, done.stderr
    run = done.json()
    usage = run["results"][0]["usage"]
    data = report(env, "--by", "run,agent")
    assert [(row["run"], row["agent"]) for row in data["rows"]] == [(run["run_id"], "mock")]
    row = data["rows"][0]
    for key, value in usage.items():
        assert row[key] == value, key
    assert row["requests"] >= 1


def test_a_subscription_preset_cost_is_labelled_as_an_api_equivalent(
    home: Home, env: dict[str, str]
) -> None:
    home.config.mkdir(parents=True, exist_ok=True)
    (home.config / "presets.yaml").write_text(
        "version: 1\npresets:\n  max:\n    agent: claude\n    billing: subscription\n"
    )
    write_ledger(
        home,
        [rec("2026-05-01T10:00:00Z", preset="max"), rec("2026-05-01T11:00:00Z", preset="api")],
    )
    data = report(env, "--by", "preset")
    by_preset = {row["preset"]: row for row in data["rows"]}
    assert by_preset["max"]["api_equivalent_usd"] == by_preset["max"]["cost_usd"] > 0
    assert by_preset["api"]["api_equivalent_usd"] == 0
    assert data["api_equivalent_usd"] == pytest.approx(by_preset["max"]["cost_usd"])
    table = run_cli("tokens", "report", "--by", "preset", env={**env, "COLUMNS": "200"})
    assert "≈" in table.stdout and "API-equivalent" in table.stdout


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--by", "day,colour"), "unknown --by key 'colour'"),
        (("--since", "2026-13-01"), "--since"),
        (("--until", "yesterday"), "--until"),
        (("--since", "2026-05-02", "--until", "2026-05-01"), "after --until"),
        (("--timezone", "Mars/Olympus"), "unknown timezone"),
        (("--cost-mode", "guess"), "unknown cost mode"),
        (("--source", "cursor"), "unknown --source"),
    ],
)
def test_bad_report_options_are_one_line_errors_with_exit_2(
    home: Home, env: dict[str, str], args: tuple[str, ...], fragment: str
) -> None:
    sample(home)
    assert_one_error_line(run_cli("tokens", "report", *args, env=env), fragment, code=2)


def torn_warning(home: Home, env: dict[str, str]) -> str:
    done = run_cli("tokens", "report", "--json", env=env)
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("aiswitch: warning: ")
    return warnings[0]


def test_a_torn_last_line_is_skipped_with_a_warning_and_never_hides_later_lines(
    home: Home, env: dict[str, str]
) -> None:
    from aiswitch.state.store import StateStore

    write_ledger(home, [rec("2026-05-01T10:00:00Z")], raw=b'{"v":1,"ts":"2026-05-01T1')
    torn = report(env)
    assert torn["totals"]["requests"] == 1
    assert "1 malformed line" in torn_warning(home, env)
    # The next writer moves the torn tail aside (kept, never deleted), then appends: no bad
    # line is left inside the ledger, and the new record counts.
    StateStore(home).append_lines("ledger", home.ledger, [ledger_line(rec("2026-05-01T12:00Z"))])
    done = run_cli("tokens", "report", "--json", env=env)
    assert done.code == 0
    assert done.json()["totals"]["requests"] == 2
    assert [line for line in done.stderr.splitlines() if line.strip()] == []
    (aside,) = home.ledger.parent.glob("tokens.jsonl.torn-*")
    assert aside.read_bytes() == b'{"v":1,"ts":"2026-05-01T1'


def test_malformed_ledger_lines_are_counted_in_one_warning_never_fatal(
    home: Home, env: dict[str, str]
) -> None:
    write_ledger(
        home,
        [rec("2026-05-01T10:00:00Z")],
        raw=b'not json\n{"ts": "2026-05-01T10:00:00Z", "input_tokens": -5}\n[1,2]\n',
    )
    write_ledger(home, [rec("2026-05-01T11:00:00Z")])
    done = run_cli("tokens", "report", "--json", env=env)
    assert done.code == 0
    assert done.json()["totals"]["requests"] == 2
    assert "skipped 3 malformed line(s)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# --- export, import, prune -----------------------------------------------------------------


def fresh_env(tmp_path: Path, name: str) -> tuple[Home, dict[str, str]]:
    from support.cli import clean_env

    home = Home(tmp_path / name)
    return home, clean_env(home.root)


def test_export_then_import_into_a_fresh_home_gives_the_same_report(
    home: Home, env: dict[str, str], tmp_path: Path
) -> None:
    sample(home)
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"export.{fmt}"
        done = run_cli("tokens", "export", "--format", fmt, "-o", str(out), env=env)
        assert done.code == 0, done.stderr
        _other, other_env = fresh_env(tmp_path, f"other-{fmt}")
        done = run_cli("tokens", "import", str(out), env=other_env)
        assert done.code == 0, done.stderr
        assert "imported 4 record(s)" in done.stdout
        for by in ("day,agent", "run,model"):
            mine = report(env, "--by", by, "--timezone", "UTC")
            theirs = report(other_env, "--by", by, "--timezone", "UTC")
            assert theirs["rows"] == mine["rows"] and theirs["totals"] == mine["totals"]


def test_importing_the_same_file_twice_adds_nothing_the_second_time(
    home: Home, env: dict[str, str], tmp_path: Path
) -> None:
    sample(home)
    out = tmp_path / "export.jsonl"
    assert run_cli("tokens", "export", "-o", str(out), env=env).code == 0
    other, other_env = fresh_env(tmp_path, "other")
    assert run_cli("tokens", "import", str(out), env=other_env).code == 0
    before = other.ledger.read_bytes()
    again = run_cli("tokens", "import", str(out), env=other_env)
    assert again.code == 0 and "imported 0 record(s)" in again.stdout
    assert "4 already present" in again.stdout
    assert other.ledger.read_bytes() == before
    # Importing into the home it came from adds nothing either.
    assert "imported 0 record(s)" in run_cli("tokens", "import", str(out), env=env).stdout


def test_export_filters_and_writes_to_stdout(home: Home, env: dict[str, str]) -> None:
    sample(home)
    done = run_cli("tokens", "export", "--agent", "codex", env=env)
    assert done.code == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(json.loads(line)["agent"] == "codex" for line in lines)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"schema": 1, "rows": []}\n', "line 1 is not a ledger record"),
        ('{"ts": "2026-05-01T10:00:00Z", "input_tokens": 5}\n{oops\n', "line 2 is not JSON"),
        ('{"ts": "2026-05-01T10:00:00Z", "input_tokens": -1}\n', "line 1 is not a ledger"),
        ("name,price\napple,3\n", "not a ledger CSV"),
    ],
)
def test_an_import_file_of_the_wrong_shape_is_one_line_error_and_writes_nothing(
    home: Home, env: dict[str, str], tmp_path: Path, content: str, fragment: str
) -> None:
    sample(home)
    before = home.ledger.read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    assert_one_error_line(run_cli("tokens", "import", str(bad), env=env), fragment, code=2)
    assert home.ledger.read_bytes() == before


def test_prune_keeps_every_report_total_and_rolls_old_days_up(
    home: Home, env: dict[str, str]
) -> None:
    sample(home)
    write_ledger(home, [], raw=b"garbage line\n")
    views = [
        ("--by", "day", "--timezone", "UTC"),
        ("--by", "day", "--timezone", "Asia/Tokyo"),
        ("--by", "agent,preset,model,run,session,provider"),
        ("--by", "month", "--cost-mode", "reported"),
    ]
    before = [report(env, *view) for view in views]
    done = run_cli("tokens", "prune", "--before", "2026-05-02", "--timezone", "UTC", env=env)
    assert done.code == 0, done.stderr
    assert "pruned 3 record(s)" in done.stdout and "1 malformed" in done.stdout
    assert b"garbage line" in home.ledger.read_bytes()  # never lose a line
    assert len(home.ledger.read_bytes().splitlines()) == 2
    after = [report(env, *view) for view in views]
    for old, new in zip(before, after, strict=True):
        assert new["rows"] == old["rows"]
        assert new["totals"] == old["totals"]


def test_import_after_prune_skips_records_older_than_the_cutoff(
    home: Home, env: dict[str, str], tmp_path: Path
) -> None:
    sample(home)
    out = tmp_path / "all.jsonl"
    assert run_cli("tokens", "export", "-o", str(out), env=env).code == 0
    totals = report(env)["totals"]
    assert (
        run_cli("tokens", "prune", "--before", "2026-05-02", "--timezone", "UTC", env=env).code == 0
    )
    again = run_cli("tokens", "import", str(out), env=env)
    assert again.code == 0 and "3 older than the last prune" in again.stdout
    assert report(env)["totals"] == totals


def test_times_at_the_edges_of_the_calendar_never_crash_a_command(
    home: Home, env: dict[str, str]
) -> None:
    """Year 1 at +01:00 is year 0 in UTC: a malformed time. Year 1 at 00:30Z exists in UTC but
    is year 0 in Los Angeles: it counts, on the first day there is."""
    sample(home)
    write_ledger(
        home,
        [],
        raw=b'{"v":1,"ts":"0001-01-01T00:00:00+01:00","input_tokens":5}\n'
        b'{"v":1,"ts":"0001-01-01T00:30:00Z","input_tokens":7}\n',
    )
    zone = ("--timezone", "America/Los_Angeles")
    shown = run_cli("tokens", "report", "--by", "day", *zone, "--json", env=env)
    assert shown.code == 0, shown.stderr
    days = {row["day"]: row["input_tokens"] for row in json.loads(shown.stdout)["rows"]}
    assert days["0001-01-01"] == 7
    assert "skipped 1 malformed line(s)" in shown.stderr
    for command in (
        ("tokens", "export", "--since", "2026-05-01", *zone),
        ("tokens", "prune", "--before", "2026-05-02", *zone),
    ):
        done = run_cli(*command, env=env)
        assert done.code == 0, done.stderr
        assert "Traceback" not in done.stderr
    assert b"0001-01-01T00:00:00+01:00" in home.ledger.read_bytes()  # never lose a line
    after = run_cli("tokens", "report", "--by", "day", *zone, "--json", env=env)
    assert json.loads(after.stdout)["totals"] == json.loads(shown.stdout)["totals"]


def test_prune_with_a_bad_date_is_a_one_line_error(home: Home, env: dict[str, str]) -> None:
    sample(home)
    before = home.ledger.read_bytes()
    assert_one_error_line(
        run_cli("tokens", "prune", "--before", "soon", env=env), "--before", code=2
    )
    assert home.ledger.read_bytes() == before


# --- the parallel cold read ----------------------------------------------------------------


def test_a_parallel_cold_read_equals_a_sequential_one_with_duplicates_across_ranges(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiswitch.tokens.report import build_report
    from aiswitch.tokens.report_options import parse_report_options
    from aiswitch.tokens.sources import parallel, parse_ledger_bytes, report_for_source

    records = [
        rec(
            f"2026-05-{1 + i % 3:02d}T{i % 24:02d}:00:00Z",
            agent=("claude", "codex")[i % 2],
            message_id=f"m{i % 150}",  # the second half repeats the first: duplicates
            request_id=f"r{i % 150}",
        )
        for i in range(300)
    ]
    write_ledger(home, records, raw=b"not json\n")
    options = parse_report_options(by="day,agent", timezone="UTC")
    rows, _malformed = parse_ledger_bytes(home.ledger.read_bytes())
    expected = build_report(rows, options)
    monkeypatch.setattr(parallel, "PARALLEL_LEDGER_MIN_BYTES", 1)
    assert parallel.parallel_workers(10) >= 1
    for workers in (2, 3):
        aggregator, bad, torn = parallel.aggregate_ledger(home.ledger, options, workers)
        got = aggregator.finish()
        assert (got.rows, got.totals, bad, torn) == (expected.rows, expected.totals, 1, False)
    # And through the report entry point, duplicates without ids in separate ranges too.
    unique = [rec(f"2026-05-01T{i % 24:02d}:00:00Z", input_tokens=i) for i in range(200)]
    write_ledger(home, unique)
    rows, _ = parse_ledger_bytes(home.ledger.read_bytes())
    via = report_for_source("aiswitch", home, options, env={}, use_cache=False)
    assert via.totals == build_report(rows, options).totals


def test_a_piped_table_keeps_every_column_whole(env: dict[str, str]) -> None:
    run = run_cli("run", "--parallel", "mock,mock@slow", "x", "--json", env=env)
    assert run.code == 0, run.stderr
    out = run_cli("tokens", "report", "--by", "day,agent,preset,model", env=env)
    assert out.code == 0, out.stderr
    assert "mock-slow" in out.stdout  # not cut to "mo…" on an assumed 80 columns
    assert "Cache rd" in out.stdout and "…" not in out.stdout
