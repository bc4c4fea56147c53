"""Amounts under a cent keep their significant digits everywhere a person reads them: quota
messages and `quota show`, report tables and their footnotes, and run summaries (one
function, `aiswitch.tokens.money.format_usd`, serves them all)."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime

import pytest
from rich.console import Console
from support.cli import run_cli

from aiswitch.cli.results_view import render_totals
from aiswitch.coordinator.coordinator import Coordinator
from aiswitch.coordinator.request import RunRequest
from aiswitch.coordinator.specs import parse_specs
from aiswitch.errors import QuotaExceededError
from aiswitch.home import Home
from aiswitch.tokens.ledger import ledger_line
from aiswitch.tokens.money import format_usd
from aiswitch.tokens.quotas import make_quota_check
from aiswitch.tokens.records import LedgerRecord


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "$0.00"),
        (0.001, "$0.001"),
        (0.0015, "$0.0015"),
        (0.00012345, "$0.000123"),
        (1.234e-7, "$0.000000123"),
        (0.00999, "$0.00999"),
        (0.01, "$0.01"),
        (0.5, "$0.50"),
        (0.12345, "$0.1235"),
        (0.99999, "$1.00"),
        (1234.567, "$1,234.57"),
        (-0.002, "-$0.002"),
    ],
)
def test_amounts_read_as_significant_digits_under_a_cent_and_cents_above(
    value: float, text: str
) -> None:
    assert format_usd(value) == text


def _spend(home: Home, cost: float) -> None:
    home.ledger.parent.mkdir(parents=True, exist_ok=True)
    record = LedgerRecord(
        ts=datetime.now(UTC),
        agent="mock",
        model="claude-sonnet-4-5",
        input_tokens=1,
        cost_usd=cost,
        cost_source="reported",
    )
    with home.ledger.open("ab") as out:
        out.write(ledger_line(record) + b"\n")


def test_a_quota_of_a_tenth_of_a_cent_reads_as_one_not_as_zero(
    home: Home, env: dict[str, str]
) -> None:
    done = run_cli("tokens", "quota", "set", "--agent", "mock", "--daily-usd", "0.001", env=env)
    assert done.code == 0, done.stderr
    _spend(home, 0.0012)
    with pytest.raises(QuotaExceededError) as caught:
        make_quota_check(home)("mock", None)
    assert "$0.0012 of $0.001 spent today" in caught.value.one_line()
    shown = run_cli("tokens", "quota", "show", env=env)
    assert "daily_usd $0.0012 / $0.001" in shown.stdout, shown.stdout


def test_the_report_table_shows_a_small_cost_with_its_digits(
    home: Home, env: dict[str, str]
) -> None:
    _spend(home, 0.00042)
    done = run_cli("tokens", "report", env={**env, "COLUMNS": "200"})
    assert done.code == 0, done.stderr
    assert "$0.00042" in done.stdout and "$0.0000" not in done.stdout, done.stdout


def test_a_run_summary_shows_a_small_cost_with_its_digits(home: Home) -> None:
    coordinator = Coordinator(home, parent_env=dict(os.environ))
    run = coordinator.new_run(RunRequest(mode="single", specs=parse_specs("mock"), prompt="x"))
    (result,) = run.result.results
    result.cost_usd = 0.000031
    run.result.totals()
    console = Console(file=io.StringIO(), width=200)
    render_totals(console, run.result)
    assert "$0.000031" in console.file.getvalue()  # type: ignore[attr-defined]
