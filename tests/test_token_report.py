"""The report engine: grouping, calendars in a timezone, filters, duplicates, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from aiswitch.errors import UsageError
from aiswitch.tokens.overlap import merge_ledger_and_cli
from aiswitch.tokens.records import LedgerRecord
from aiswitch.tokens.report import build_report
from aiswitch.tokens.report_options import parse_report_options
from aiswitch.tokens.rows import R_MESSAGE, R_SESSION, R_SOURCE, row_from_record


def _rec(ts: str, **fields: Any) -> LedgerRecord:
    defaults: dict[str, Any] = {"input_tokens": 10, "output_tokens": 2, "model": "gpt-4.1"}
    return LedgerRecord(ts=ts, **{**defaults, **fields})


def test_days_are_cut_in_the_report_timezone() -> None:
    records = [_rec("2026-03-01T14:30:00Z"), _rec("2026-03-01T15:30:00Z")]
    tokyo = build_report(records, parse_report_options(by="day", timezone="Asia/Tokyo"))
    utc = build_report(records, parse_report_options(by="day", timezone="UTC"))
    assert [row["day"] for row in tokyo.rows] == ["2026-03-01", "2026-03-02"]
    assert [row["day"] for row in utc.rows] == ["2026-03-01"]
    assert utc.rows[0]["requests"] == 2


def test_a_half_hour_offset_zone_cuts_days_at_the_right_minute() -> None:
    records = [_rec("2026-03-01T18:29:00Z"), _rec("2026-03-01T18:31:00Z")]
    report = build_report(records, parse_report_options(by="day", timezone="Asia/Kolkata"))
    assert [row["day"] for row in report.rows] == ["2026-03-01", "2026-03-02"]


def test_instants_beyond_the_calendar_count_on_its_first_and_last_days() -> None:
    """Year 1 with an east offset is year 0 in UTC: no crash, counted on the first day."""
    rows = [
        # ... cost, cost_source, host, branch, caller, requests
        (-62135600400.0, *[None] * 9, 1, 1, 0, 0, 0, 0, None, "unpriced", None, None, None, 1),
        (253402300799.0, *[None] * 9, 2, 2, 0, 0, 0, 0, None, "unpriced", None, None, None, 1),
    ]  # 0001-01-01+01:00 and 9999-12-31Z
    rows = [(row[0], "aiswitch", *row[2:]) for row in rows]
    report = build_report(rows, parse_report_options(by="day", timezone="Asia/Tokyo"))
    assert [(row["day"], row["input_tokens"]) for row in report.rows] == [
        ("0001-01-01", 1),
        ("9999-12-31", 2),
    ]


def test_weeks_are_iso_weeks_and_months_are_year_month() -> None:
    records = [_rec("2026-12-31T12:00:00Z"), _rec("2027-01-04T12:00:00Z")]
    weeks = build_report(records, parse_report_options(by="week,month", timezone="UTC"))
    assert [(row["week"], row["month"]) for row in weeks.rows] == [
        ("2026-W53", "2026-12"),
        ("2027-W01", "2027-01"),
    ]


def test_since_and_until_are_inclusive_days_in_the_report_timezone() -> None:
    records = [_rec(f"2026-05-{day:02d}T12:00:00Z", input_tokens=day) for day in range(1, 6)]
    report = build_report(
        records,
        parse_report_options(by="day", since="2026-05-02", until="20260504", timezone="UTC"),
    )
    assert [row["day"] for row in report.rows] == ["2026-05-02", "2026-05-03", "2026-05-04"]
    assert report.totals["input_tokens"] == 2 + 3 + 4


def test_several_keys_at_once_and_filters_on_agent_preset_model_and_run() -> None:
    records = [
        _rec("2026-05-01T00:00:00Z", agent="claude", preset="kimi", run_id="r1"),
        _rec("2026-05-01T00:00:00Z", agent="codex", preset="openai", run_id="r1"),
        _rec(
            "2026-05-01T00:00:00Z",
            agent="claude",
            preset="anthropic",
            run_id="r2",
            model="claude-haiku-4-5-20251001",
        ),
    ]
    report = build_report(records, parse_report_options(by="agent,preset", timezone="UTC"))
    assert [(row["agent"], row["preset"]) for row in report.rows] == [
        ("claude", "anthropic"),
        ("claude", "kimi"),
        ("codex", "openai"),
    ]
    only = build_report(
        records,
        parse_report_options(
            by="run", agents=["claude"], models=["claude-haiku-4-5"], timezone="UTC"
        ),
    )
    assert [row["run"] for row in only.rows] == ["r2"]
    runs = build_report(records, parse_report_options(by="agent", runs=["r1"], timezone="UTC"))
    assert [row["agent"] for row in runs.rows] == ["claude", "codex"]


def test_provider_falls_back_to_the_vendor_of_the_priced_model() -> None:
    records = [
        _rec("2026-05-01T00:00:00Z", provider="api.moonshot.ai"),
        _rec("2026-05-01T00:00:00Z", model="claude-opus-4-5"),
        _rec("2026-05-01T00:00:00Z", model="homebrew-model"),
    ]
    report = build_report(records, parse_report_options(by="provider", timezone="UTC"))
    assert [row["provider"] for row in report.rows] == [None, "anthropic", "api.moonshot.ai"]


def test_duplicates_by_source_message_and_request_count_once() -> None:
    records = [
        _rec("2026-05-01T00:00:00Z", message_id="m", request_id="r"),
        _rec("2026-05-01T00:00:01Z", message_id="m", request_id="r"),
        _rec("2026-05-01T00:00:02Z", message_id="m", request_id="r", source="claude"),
        _rec("2026-05-01T00:00:03Z", message_id="m"),
        _rec("2026-05-01T00:00:04Z", message_id="m"),
    ]
    report = build_report(records, parse_report_options(by="day", timezone="UTC"))
    assert report.totals["requests"] == 4


def test_totals_add_up_every_counter_and_total_tokens_excludes_reasoning() -> None:
    records = [
        _rec(
            "2026-05-01T00:00:00Z",
            input_tokens=1,
            output_tokens=10,
            cache_read_tokens=100,
            cache_write_tokens=1000,
            reasoning_tokens=4,
        ),
        _rec("2026-05-02T00:00:00Z", input_tokens=2, output_tokens=20),
    ]
    totals = build_report(records, parse_report_options(by="day", timezone="UTC")).totals
    assert totals["total_tokens"] == 1 + 10 + 100 + 1000 + 2 + 20
    assert totals["reasoning_tokens"] == 4
    assert totals["requests"] == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"by": "day,hour"}, "unknown --by key 'hour'"),
        ({"by": "day,day"}, "--by lists a key twice"),
        ({"by": ""}, "--by needs at least one key"),
        ({"since": "2026-13-01"}, "--since: '2026-13-01' is not a date"),
        ({"until": "yesterday"}, "--until: 'yesterday' is not a date"),
        ({"since": "2026-02-02", "until": "2026-02-01"}, "is after --until"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
    ],
)
def test_bad_options_are_one_line_usage_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        parse_report_options(**kwargs)
    assert "\n" not in caught.value.one_line()


def test_json_has_rows_named_after_the_keys_and_totals_with_the_same_counters() -> None:
    report = build_report(
        [_rec("2026-05-01T00:00:00Z", agent="claude")],
        parse_report_options(by="day,agent", timezone="UTC"),
    )
    data = json.loads(report.to_json())
    assert data["rows"][0]["day"] == "2026-05-01" and data["rows"][0]["agent"] == "claude"
    counters = {
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
    assert counters <= set(data["rows"][0]) and counters == set(data["totals"])
    assert data["by"] == ["day", "agent"] and data["timezone"] == "UTC"


def test_csv_has_a_header_one_line_per_row_and_a_total_line() -> None:
    report = build_report(
        [_rec("2026-05-01T00:00:00Z"), _rec("2026-05-02T00:00:00Z")],
        parse_report_options(by="day", timezone="UTC"),
    )
    lines = list(csv.reader(io.StringIO(report.to_csv())))
    assert lines[0][:2] == ["day", "input_tokens"]
    assert [line[0] for line in lines[1:]] == ["2026-05-01", "2026-05-02", "TOTAL"]
    assert lines[-1][1] == "20"


def test_all_sources_skip_cli_log_entries_the_ledger_already_holds() -> None:
    ledger = [
        row_from_record(
            _rec("2026-05-01T00:00:00Z", session_id="s", message_id="m", request_id="r")
        )
    ]
    cli = [
        row_from_record(
            _rec(
                "2026-05-01T00:00:00Z",
                source="claude",
                session_id="s",
                message_id="m",
                request_id="r",
            )
        ),
        row_from_record(
            _rec(
                "2026-05-01T00:00:00Z",
                source="claude",
                session_id="other",
                message_id="m",
                request_id="r",
            )
        ),
        row_from_record(
            _rec(
                "2026-05-01T00:00:00Z",
                source="claude",
                session_id="s",
                message_id="m2",
                request_id="r2",
            )
        ),
    ]
    merged = list(merge_ledger_and_cli(ledger, cli))
    assert [(row[R_SOURCE], row[R_SESSION], row[R_MESSAGE]) for row in merged] == [
        ("aiswitch", "s", "m"),
        ("claude", "other", "m"),
        ("claude", "s", "m2"),
    ]
