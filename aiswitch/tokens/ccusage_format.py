"""`tokens report --json --format ccusage`: a report in the JSON shape of ccusage's `daily`,
`monthly` and `session` output, so that tools built on ccusage read aiswitch's numbers.

Contract:

- `ccusage_document(report, period, sessions)` takes a report grouped by `(period, "model")`
  (`period`: `day`, `month` or `session`) and returns ccusage 20.0.24's document:
  `{"daily" | "monthly" | "sessions": [...], "totals": {...}}`, each entry with
  `inputTokens`, `outputTokens`, `cacheCreationTokens`, `cacheReadTokens`, `totalTokens`,
  `totalCost`, `modelsUsed` and `modelBreakdowns` (per model: the four counts, `modelName` and
  `cost`, most expensive first), plus `date` (daily), `month` (monthly) or `sessionId`,
  `projectPath`, `firstActivity` and `lastActivity` (sessions; from `sessions`).
- ccusage has no place for an unpriced request: its cost adds 0 (the aiswitch format keeps
  `unpriced_requests`). `<synthetic>` (Claude Code's own error messages, no tokens) and rows
  without a model are counted in the entry's totals, not listed as models.
- Entries are in ascending order of their key; sessions most expensive first (ccusage's
  order). Keys are written sorted, as ccusage writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiswitch.errors import UsageError
from aiswitch.tokens.report import Report

# --by value -> (the list's name, the entry's key field)
PERIODS = {"day": ("daily", "date"), "month": ("monthly", "month"), "session": ("sessions", "")}
FORMATS = ("aiswitch", "ccusage")
SYNTHETIC_MODEL = "<synthetic>"
UNKNOWN_PROJECT = "Unknown Project"


@dataclass(frozen=True)
class SessionInfo:
    """What ccusage's session entries say beyond the sums."""

    project: str
    first: str  # ISO 8601, UTC, milliseconds
    last: str


def check_format(fmt: str, by: str, as_json: bool) -> str:
    """`fmt` when valid with these options; else a `UsageError` saying what to do."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "ccusage":
        if not as_json:
            raise UsageError("--format ccusage is a JSON shape: add --json")
        if by not in PERIODS:
            raise UsageError(
                f"--format ccusage needs --by day, month or session (ccusage's daily, monthly "
                f"and session reports), not {by!r}"
            )
    return fmt


def _counts() -> dict[str, Any]:
    return {
        "cacheCreationTokens": 0,
        "cacheReadTokens": 0,
        "inputTokens": 0,
        "outputTokens": 0,
        "totalCost": 0.0,
        "totalTokens": 0,
    }


def _add(into: dict[str, Any], row: Mapping[str, Any]) -> None:
    into["inputTokens"] += row["input_tokens"]
    into["outputTokens"] += row["output_tokens"]
    into["cacheCreationTokens"] += row["cache_write_tokens"]
    into["cacheReadTokens"] += row["cache_read_tokens"]
    into["totalTokens"] += row["total_tokens"]
    into["totalCost"] += row["cost_usd"] or 0.0


def ccusage_document(
    report: Report, period: str, sessions: Mapping[str, SessionInfo] | None = None
) -> dict[str, Any]:
    """The report as ccusage's document (see the module docstring)."""
    name, key_field = PERIODS[period]
    entries: dict[str, dict[str, Any]] = {}
    breakdowns: dict[str, dict[str, dict[str, Any]]] = {}
    totals = _counts()
    for row in report.rows:
        key = str(row[period])
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = _counts()
            breakdowns[key] = {}
        _add(entry, row)
        _add(totals, row)
        model = row.get("model")
        if model and model != SYNTHETIC_MODEL:
            part = breakdowns[key].setdefault(model, _counts())
            _add(part, row)
    out: list[dict[str, Any]] = []
    for key, entry in entries.items():
        models = breakdowns[key]
        entry["modelsUsed"] = list(models)
        entry["modelBreakdowns"] = [
            {
                "cacheCreationTokens": part["cacheCreationTokens"],
                "cacheReadTokens": part["cacheReadTokens"],
                "cost": part["totalCost"],
                "inputTokens": part["inputTokens"],
                "modelName": model,
                "outputTokens": part["outputTokens"],
            }
            for model, part in sorted(models.items(), key=lambda item: -item[1]["totalCost"])
        ]
        if period == "session":
            info = (sessions or {}).get(key)
            entry["sessionId"] = key
            entry["projectPath"] = info.project if info else UNKNOWN_PROJECT
            entry["firstActivity"] = info.first if info else None
            entry["lastActivity"] = info.last if info else None
        else:
            entry[key_field] = key
        out.append(entry)
    if period == "session":
        out.sort(key=lambda entry: -entry["totalCost"])  # ccusage's: most expensive first
    else:
        out.sort(key=lambda entry: str(entry[key_field]))
    return {name: out, "totals": totals}


def session_infos(
    rows: list[tuple[Any, ...]], projects: Mapping[str, str]
) -> dict[str, SessionInfo]:
    """First and last activity of each session of `rows`, and its project (`projects`: session
    id -> project folder name, for Claude's logs)."""
    from aiswitch.tokens.blocks import iso_ms
    from aiswitch.tokens.rows import R_SESSION, R_TS

    spans: dict[str, list[float]] = {}
    for row in rows:
        session = row[R_SESSION]
        if session is None:
            continue
        span = spans.get(session)
        ts = row[R_TS]
        if span is None:
            spans[session] = [ts, ts]
        elif ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts
    return {
        session: SessionInfo(
            projects.get(session, UNKNOWN_PROJECT),
            iso_ms(round(first * 1000)),
            iso_ms(round(last * 1000)),
        )
        for session, (first, last) in spans.items()
    }
