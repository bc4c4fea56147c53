"""The prune rollup beside the ledger, `state/tokens-rollup.jsonl`: what `tokens prune`
(aiswitch.tokens.transfer) writes in place of the ledger lines it removes, and what reports
count in their place (`read_rollup`).

Rollup format (version 1), one JSON object per line:

    {"v": 1, "kind": "rollup", "prune": <id>, "slot": "<UTC ISO start of a 15-minute slot>",
     "source", "agent", "preset", "provider", "model", "run_id", "session_id",
     <input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
      cache_write_1h_tokens>, "requests", "reported_cost_usd", "reported_requests",
     "calculated_cost_usd", "calculated_requests", "unpriced_requests"}
    {"v": 1, "kind": "prune", "prune": <id>, "before": "YYYY-MM-DD", "timezone": "...",
     "cutoff": "<UTC ISO of local midnight of before>", "at": "<UTC ISO>", "records": N,
     "status": "pending" | "done", "ledger_inode": N}

An entry's sums stay 64-bit integers (what a JSON line holds as one); a sum that would pass
that goes on in a further entry of the same slot and names. Standard library only at import:
reports' fast paths read the rollup's path through this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiswitch.home import Home
from aiswitch.tokens.schema import MAX_INT64
from aiswitch.tokens.times import SLOT_SECONDS  # the rollup's time grain

if TYPE_CHECKING:
    from aiswitch.tokens.records import LedgerRecord

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


# --- the rollup ---------------------------------------------------------------------------


def _entry(obj: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """A rollup entry (the `U_*` order of `aiswitch.tokens.report`), None when off-schema."""
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
    # A ledger line may report any number as its cost (schema kind `cost`), so a sum may be
    # below zero too; reading it back must not drop the entry's tokens with it.
    if any(type(value) not in (int, float) for value in costs):
        return None
    return (ts.timestamp(), *texts, *counts, *costs)


@dataclass
class RollupFile:
    """A parsed rollup: its lines (kept verbatim for rewrites), entries and markers."""

    lines: list[bytes] = field(default_factory=list)
    entries: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)  # (prune id, …)
    marks: list[dict[str, Any]] = field(default_factory=list)
    malformed: int = 0

    def live_entries(self, ledger_inode: int | None) -> list[tuple[Any, ...]]:
        """Entries of finished prunes, and of a pending one whose new ledger is in place."""
        dead = {
            mark.get("prune")
            for mark in self.marks
            if mark.get("status") == "pending" and mark.get("ledger_inode") != ledger_inode
        }
        return [entry for prune_id, entry in self.entries if prune_id not in dead]

    def cutoff(self) -> datetime | None:
        """The latest prune cutoff (an instant: local midnight of `before`)."""
        found: datetime | None = None
        for mark in self.marks:
            try:
                instant = datetime.fromisoformat(str(mark.get("cutoff")))
            except ValueError:
                continue
            if found is None or instant > found:
                found = instant
        return found


def read_rollup_file(path: Path) -> RollupFile:
    import orjson

    result = RollupFile()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return result
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        result.lines.append(line)
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            result.malformed += 1
            continue
        if not isinstance(obj, dict):
            result.malformed += 1
        elif obj.get("kind") == "prune":
            result.marks.append(obj)
        elif (entry := _entry(obj)) is not None:
            prune_id = obj.get("prune")
            result.entries.append((prune_id if isinstance(prune_id, int) else 0, entry))
        else:
            result.malformed += 1
    return result


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def read_rollup(home: Home) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The rollup entries reports count, and a warning when some lines were unreadable."""
    path = rollup_path(home)
    rollup = read_rollup_file(path)
    warnings = []
    if rollup.malformed:
        warnings.append(f"aiswitch: skipped {rollup.malformed} malformed line(s) in {path}")
    return rollup.live_entries(_inode(home.ledger)), warnings


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def add_to_rollup(
    sums: dict[tuple[Any, ...], list[Any]], record: LedgerRecord, ts: datetime, table: Any
) -> None:
    slot = int(ts.timestamp()) // SLOT_SECONDS * SLOT_SECONDS
    texts = tuple(getattr(record, name) or "" for name in TEXT_FIELDS)
    counts = [getattr(record, name) for name in TOKEN_FIELDS]
    # An entry's sums stay 64-bit integers (what a line holds as one): a sum that would pass
    # MAX_INT64 goes on in a further entry of the same slot and names.
    part = 0
    while True:
        key = (slot, *texts, part)
        acc = sums.get(key)
        if acc is None:
            acc = sums[key] = [0] * len(TOKEN_FIELDS) + [0, 0.0, 0, 0.0, 0, 0]
        if all(a + c <= MAX_INT64 for a, c in zip(acc, counts, strict=False)):
            break
        part += 1
    for index, count in enumerate(counts):
        acc[index] += count
    base = len(TOKEN_FIELDS)
    requests = record.requests
    acc[base] += requests
    if record.cost_source == "reported" and record.cost_usd is not None:
        acc[base + 1] += record.cost_usd
        acc[base + 2] += requests
        return
    price = table.lookup(record.model)
    if price is None:
        acc[base + 5] += requests
        return
    acc[base + 3] += price.cost(
        record.input_tokens,
        record.output_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.cache_write_1h_tokens,
        table.tier_rule,
    )
    acc[base + 4] += requests


def rollup_line(prune_id: int, key: tuple[Any, ...], acc: list[Any]) -> bytes:
    import orjson

    slot, *texts, _part = key
    obj: dict[str, Any] = {
        "v": ROLLUP_VERSION,
        "kind": "rollup",
        "prune": prune_id,
        "slot": utc_text(datetime.fromtimestamp(slot, UTC)),
    }
    for name, value in zip(TEXT_FIELDS, texts, strict=True):
        if value:
            obj[name] = value
    obj.update(zip(TOKEN_FIELDS, acc[: len(TOKEN_FIELDS)], strict=True))
    obj.update(zip(COST_FIELDS, acc[len(TOKEN_FIELDS) :], strict=True))
    return orjson.dumps(obj)
