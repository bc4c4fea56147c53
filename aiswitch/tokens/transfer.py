"""Moving usage data: export, import (merge another machine's ledger) and prune (rollup).

Contract:

- `rollup_path(home)` is `state/tokens-rollup.jsonl`; `read_rollup(home)` returns its entries
  (tuples in the order `aiswitch.tokens.report` names `U_*`) and warnings for bad lines.
  Rollup format (version 1), one JSON object per line:
    `{"v": 1, "kind": "rollup", "slot": <UTC ISO time of a 15-minute slot>, "source", "agent",
      "preset", "provider", "model", "run_id", "session_id", <the six token counters>,
      "requests", "reported_cost_usd", "reported_requests", "calculated_cost_usd",
      "calculated_requests", "unpriced_requests"}`
    `{"v": 1, "kind": "prune", "before": "YYYY-MM-DD", "timezone": ..., "at": ...,
      "records": N}` — one per prune, the cutoff that import respects.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiswitch.home import Home

ROLLUP_FILE = "tokens-rollup.jsonl"
ROLLUP_VERSION = 1
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cache_write_1h_tokens",
)
TEXT_FIELDS = ("source", "agent", "preset", "provider", "model", "run_id", "session_id")
COST_FIELDS = (
    "requests",
    "reported_cost_usd",
    "reported_requests",
    "calculated_cost_usd",
    "calculated_requests",
    "unpriced_requests",
)


def rollup_path(home: Home) -> Path:
    return home.state / ROLLUP_FILE


def _entry(obj: Any) -> tuple[Any, ...] | None:
    """A rollup entry from one parsed line, or None when it is off-schema."""
    if not isinstance(obj, dict):
        return None
    try:
        ts = datetime.fromisoformat(obj["slot"])
    except (KeyError, TypeError, ValueError):
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    texts = tuple(obj.get(name) for name in TEXT_FIELDS)
    counts = tuple(obj.get(name, 0) for name in TOKEN_FIELDS)
    costs = tuple(obj.get(name, 0) for name in COST_FIELDS)
    if any(value is not None and type(value) is not str for value in texts):
        return None
    if any(type(value) is not int or value < 0 for value in counts):
        return None
    if any(type(value) not in (int, float) or value < 0 for value in costs):
        return None
    return (ts.timestamp(), *texts, *counts, *costs)


def read_rollup_file(path: Path) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]], int]:
    """(entries, prune markers, malformed lines) of a rollup file (missing: empty)."""
    import orjson

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], [], 0
    entries: list[tuple[Any, ...]] = []
    marks: list[dict[str, Any]] = []
    malformed = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            malformed += 1
            continue
        if isinstance(obj, dict) and obj.get("kind") == "prune":
            marks.append(obj)
            continue
        entry = _entry(obj)
        if entry is None:
            malformed += 1
        else:
            entries.append(entry)
    return entries, marks, malformed


def read_rollup(home: Home) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The rollup's entries, and a warning when some of its lines were unreadable."""
    path = rollup_path(home)
    entries, _, malformed = read_rollup_file(path)
    warnings = [f"aiswitch: skipped {malformed} malformed line(s) in {path}"] if malformed else []
    return entries, warnings


def _unused(_: Sequence[Any]) -> None:  # pragma: no cover - placeholder removed below
    return None
