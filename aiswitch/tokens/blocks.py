"""Claude's 5-hour billing windows ("blocks"), as `ccusage blocks` computes them.

Contract:

- `build_blocks(rows, table, now)` turns usage rows (report `Row`s, any order) into blocks,
  oldest first, each a dict in the exact shape of `ccusage blocks --json` (keys, types and
  values; tests/test_ccusage_blocks.py holds them equal on the same logs):
  - Rows are taken in time order. A block starts at the first row's time floored to the UTC
    hour and lasts `SESSION_HOURS`; a row more than that after the block's start, or after
    the previous row, starts a new block. When the pause since the previous row is longer
    than the window, a gap block (`isGap`, no entries) covers the time from the previous
    row's time plus the window to the new row.
  - A block is active while `now` is within the window of its last row and before its end;
    an active block has a burn rate (tokens per minute and cost per hour between its first
    and last row) and a projection to its end.
  - `costUSD` adds the rows' costs in the `auto` mode (the reported cost, else the price
    table's); a row of an unpriced model adds nothing (ccusage's shape has no field for it:
    `unpriced_entries` counts them for the table view).
- `select_blocks(blocks, now, active=…, recent=…, token_limit=…)` applies the options:
  `--recent` keeps blocks started within `RECENT_DAYS` and the active one, `--active` only the
  active one, and `--token-limit N|max` adds `tokenLimitStatus` to active blocks (`max`: the
  most tokens any finished block used).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from aiswitch.errors import UsageError
from aiswitch.tokens.prices import PriceTable
from aiswitch.tokens.rows import (
    R_CACHE_READ,
    R_CACHE_WRITE,
    R_CACHE_WRITE_1H,
    R_COST,
    R_COST_SOURCE,
    R_INPUT,
    R_MODEL,
    R_OUTPUT,
    R_TS,
)

# ccusage's default session length (`--session-length`): Claude's usage window.
SESSION_HOURS = 5
SESSION_MS = SESSION_HOURS * 3600 * 1000
HOUR_MS = 3600 * 1000
# `--recent`: blocks started within this many days (ccusage's DEFAULT_RECENT_DAYS).
RECENT_DAYS = 3
# A projected use above this share of the limit is a warning (ccusage's threshold).
WARNING_SHARE = 0.8
SYNTHETIC_MODEL = "<synthetic>"
# What our blocks carry beyond ccusage's shape: unpriced requests (the table shows them) and
# the first request's time in ms (the status line's burn rate).
EXTRA_KEYS = frozenset({"unpriced_entries", "first_entry_ms"})
# `--token-limit max`: the most tokens a finished block used.
MAX_LIMIT = "max"


def iso_ms(ms: int) -> str:
    """An instant as ccusage writes it: UTC, milliseconds, `Z`."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_token_limit(text: str | None) -> str | int | None:
    """`--token-limit`: a positive whole number of tokens, or `max`."""
    if text is None:
        return None
    if text == MAX_LIMIT:
        return MAX_LIMIT
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise UsageError(f"--token-limit must be a whole number of tokens or 'max', not {text!r}")
    return value


class _Block:
    __slots__ = ("cost", "counts", "first", "last", "models", "rows", "start", "unpriced")

    def __init__(self, start: int) -> None:
        self.start = start
        self.first = self.last = start
        self.rows = 0
        self.counts = [0, 0, 0, 0]  # input, output, cache write, cache read
        self.cost = 0.0
        self.unpriced = 0
        self.models: dict[str, None] = {}


class RowPricer:
    """The `auto` cost of report rows: the reported cost, else the table's; each model looked
    up once (a lookup normalises the id with regular expressions)."""

    def __init__(self, table: PriceTable) -> None:
        self.table = table
        self.costs: dict[str | None, Callable[[int, int, int, int, int], float] | None] = {}

    def cost(self, row: tuple[Any, ...]) -> float | None:
        if row[R_COST_SOURCE] == "reported" and row[R_COST] is not None:
            return float(row[R_COST])
        model = row[R_MODEL]
        try:
            cost = self.costs[model]
        except KeyError:
            price = self.table.lookup(model)
            cost = self.costs[model] = (
                price.request_cost(self.table.tier_rule) if price is not None else None
            )
        if cost is None:
            return None
        return cost(
            row[R_INPUT],
            row[R_OUTPUT],
            row[R_CACHE_READ],
            row[R_CACHE_WRITE],
            row[R_CACHE_WRITE_1H],
        )


def build_blocks(
    rows: Iterable[tuple[Any, ...]], table: PriceTable, now: datetime
) -> list[dict[str, Any]]:
    """The blocks of `rows` at `now` (see the module docstring), oldest first."""
    now_ms = int(now.timestamp() * 1000)
    row_cost = RowPricer(table).cost
    out: list[dict[str, Any]] = []
    current: _Block | None = None
    for row in sorted(rows, key=itemgetter(R_TS)):
        ts = round(row[R_TS] * 1000)
        if current is None:
            current = _Block(ts - ts % HOUR_MS)
            current.first = ts
        elif ts - current.start > SESSION_MS or ts - current.last > SESSION_MS:
            out.append(_finish(current, now_ms))
            if ts - current.last > SESSION_MS:
                out.append(_gap(current.last + SESSION_MS, ts))
            current = _Block(ts - ts % HOUR_MS)
            current.first = ts
        current.last = ts
        current.rows += 1
        counts = current.counts
        counts[0] += row[R_INPUT]
        counts[1] += row[R_OUTPUT]
        counts[2] += row[R_CACHE_WRITE]
        counts[3] += row[R_CACHE_READ]
        model = row[R_MODEL]
        if model and model != SYNTHETIC_MODEL:
            current.models.setdefault(model, None)
        cost = row_cost(row)
        if cost is None:
            current.unpriced += 1
        else:
            current.cost += cost
    if current is not None:
        out.append(_finish(current, now_ms))
    return out


def _gap(start: int, end: int) -> dict[str, Any]:
    return {
        "actualEndTime": None,
        "burnRate": None,
        "costUSD": 0,
        "endTime": iso_ms(end),
        "entries": 0,
        "id": f"gap-{iso_ms(start)}",
        "isActive": False,
        "isGap": True,
        "models": [],
        "projection": None,
        "startTime": iso_ms(start),
        "tokenCounts": _counts([0, 0, 0, 0]),
        "totalTokens": 0,
    }


def _counts(counts: list[int]) -> dict[str, int]:
    return {
        "cacheCreationInputTokens": counts[2],
        "cacheReadInputTokens": counts[3],
        "inputTokens": counts[0],
        "outputTokens": counts[1],
    }


def _finish(block: _Block, now_ms: int) -> dict[str, Any]:
    end = block.start + SESSION_MS
    total = sum(block.counts)
    active = now_ms - block.last < SESSION_MS and now_ms < end
    burn = projection = None
    minutes = (block.last - block.first) / 60000
    if active and minutes > 0:
        burn = {
            "costPerHour": block.cost / minutes * 60,
            "tokensPerMinute": total / minutes,
            "tokensPerMinuteForIndicator": (block.counts[0] + block.counts[1]) / minutes,
        }
        remaining = max(0.0, (end - now_ms) / 60000)
        projection = {
            "remainingMinutes": _js_round(remaining),
            "totalCost": _js_round((block.cost + burn["costPerHour"] / 60 * remaining) * 100) / 100,
            "totalTokens": _js_round(total + burn["tokensPerMinute"] * remaining),
        }
    return {
        "actualEndTime": iso_ms(block.last),
        "burnRate": burn,
        "costUSD": block.cost,
        "endTime": iso_ms(end),
        "entries": block.rows,
        "id": iso_ms(block.start),
        "isActive": active,
        "isGap": False,
        "models": list(block.models),
        "projection": projection,
        "startTime": iso_ms(block.start),
        "tokenCounts": _counts(block.counts),
        "totalTokens": total,
        # Not in ccusage's shape (`EXTRA_KEYS`): dropped from --json.
        "unpriced_entries": block.unpriced,
        "first_entry_ms": block.first,
    }


def _js_round(value: float) -> int:
    """JavaScript's Math.round (halves up), which ccusage's figures follow."""
    import math

    return math.floor(value + 0.5)


def select_blocks(
    blocks: list[dict[str, Any]],
    now: datetime,
    *,
    active: bool = False,
    recent: bool = False,
    token_limit: str | int | None = None,
) -> list[dict[str, Any]]:
    """The blocks the options keep, with `tokenLimitStatus` on active ones when a limit is
    given (see the module docstring)."""
    limit: int | None = None
    if isinstance(token_limit, str):  # "max"
        limit = max(
            (b["totalTokens"] for b in blocks if not b["isGap"] and not b["isActive"]), default=0
        )
    elif isinstance(token_limit, int):
        limit = token_limit
    chosen = blocks
    if recent:
        cutoff = iso_ms(int(now.timestamp() * 1000) - RECENT_DAYS * 24 * HOUR_MS)
        chosen = [b for b in chosen if b["startTime"] >= cutoff or b["isActive"]]
    if active:
        chosen = [b for b in chosen if b["isActive"]]
    if limit:
        chosen = [_with_limit(b, limit) if b["isActive"] else b for b in chosen]
    return chosen


def _with_limit(block: dict[str, Any], limit: int) -> dict[str, Any]:
    projection = block["projection"]
    used = projection["totalTokens"] if projection else block["totalTokens"]
    if used > limit:
        status = "exceeds"
    elif used > limit * WARNING_SHARE:
        status = "warning"
    else:
        status = "ok"
    return {
        **block,
        "tokenLimitStatus": {
            "limit": limit,
            "percentUsed": used / limit * 100,
            "projectedUsage": used,
            "status": status,
        },
    }


def ccusage_json(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The `--json` document: ccusage's shape exactly (our extra fields left out)."""
    return {
        "blocks": [
            {key: value for key, value in block.items() if key not in EXTRA_KEYS}
            for block in blocks
        ]
    }
