"""Claude's 5-hour billing windows ("blocks"), as `ccusage blocks` computes them.

Contract:

- `build_blocks(entries, table, now)` turns deduplicated Claude log entries (`ClaudeEntry`
  tuples, in the logs' order) into blocks, oldest first, each a dict in the exact shape of
  `ccusage blocks --json` (keys, types and values; tests/test_ccusage_blocks.py holds them
  equal on the same logs):
  - Entries are taken in time order (entries of the same millisecond in the logs' order). A
    block starts at the first entry's time floored to the UTC hour and lasts
    `SESSION_HOURS`; an entry more than that after the block's start, or after the previous
    entry, starts a new block. When the pause since the previous entry is longer than the
    window, a gap block (`isGap`, no entries) covers the time from the previous entry's time
    plus the window to the new entry. `models` lists the block's models in the order of
    their first request (`<synthetic>` left out).
  - A block is active while `now` is within the window of its last entry and before its end;
    an active block has a burn rate (tokens per minute and cost per hour between its first
    and last entry) and a projection to its end.
  - `costUSD` adds the entries' costs in the `auto` mode (the reported cost, else the price
    table's); an entry of an unpriced model adds nothing (ccusage's shape has no field for
    it: `unpriced_entries` counts them for the table view). Costs are summed per hour and
    model, so they equal a sum entry by entry to the last bits of a float only.
- `HourSums` is how: entries summed per hour (see the class), which worker processes build
  over shares of the logs and the parent merges (`claude_parallel.sum_claude`); `blocks(now)`
  then walks hours, not entries.
- `EntryPricer(table).cost(entry)`: one entry's `auto` cost (the status line's per-session
  and per-day sums).
- `select_blocks(blocks, now, active=…, recent=…, token_limit=…)` applies the options:
  `--recent` keeps blocks started within `RECENT_DAYS` and the active one, `--active` only the
  active one, and `--token-limit N|max` adds `tokenLimitStatus` to active blocks (`max`: the
  most tokens any finished block used).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiswitch.errors import UsageError
from aiswitch.tokens.prices import ModelPrice, PriceTable

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
    __slots__ = ("cost", "counts", "first", "firsts", "last", "rows", "start", "unpriced")

    def __init__(self, start: int, first: int) -> None:
        self.start = start
        self.first = self.last = first
        self.rows = 0
        self.counts = [0, 0, 0, 0]  # input, output, cache write, cache read
        self.cost = 0.0
        self.unpriced = 0
        # (time, order, model) of each group's first request, in time and order.
        self.firsts: list[tuple[int, int, str]] = []


# A group's sums (`HourSums.groups` values), by position.
_FIRST, _ORDER, _LAST, _ROWS, _INPUT, _OUTPUT, _READ, _WRITE, _WRITE_1H, _COST = range(10)


class HourSums:
    """Claude log entries summed per hour: all that blocks need of them.

    An entry (a deduplicated `ClaudeEntry` tuple) is added to the group of its hour, its
    model and how it is priced (`kind`: -1 when the log reported its cost, else the price
    tier of its prompt, 0 for a model with one rate). Hours are right-closed,
    `((k - 1) h, k h]`: a block ends on a whole hour (`SESSION_HOURS` after its start,
    floored to the hour) and a pause longer than the window is longer than an hour, so no
    block starts inside an hour's entries other than at its first one, and blocks are built
    from the hours' first and last times and sums alone (`blocks`). A group keeps its first
    entry's time and order (the position of the entry in the input: what orders models first
    seen at the same millisecond), its last time, its request and token counts, and its cost:
    the reported costs summed, else the tier's rates applied to the sums at the end (prices
    are linear within a tier: the same figure as entry by entry, to the last bits of a
    float), or entry by entry under the `per_counter` tier rule; a model without a price
    counts its requests as unpriced.

    `sums()` and `merge(sums)` carry the groups between processes (marshallable)."""

    def __init__(self, table: PriceTable) -> None:
        self.table = table
        # (hour, model, kind) -> [first, order, last, rows, in, out, read, write, write 1h,
        # cost]
        self.groups: dict[tuple[int, str | None, int], list[Any]] = {}
        # How a model's entries are priced as they are added: None (one rate, or no price),
        # the prompt sizes its tiers start above, or a price per request (`_how`).
        self._hows: dict[str | None, Any] = {}
        self._prices: dict[str | None, ModelPrice | None] = {}  # looked up once per model

    def add_entries(
        self, entries: Sequence[tuple[Any, ...]], order_of: Callable[[int], int]
    ) -> None:
        """Add `entries`, whose orders rise with their positions (`order_of(i)` for the i-th)."""
        groups = self.groups
        hows = self._hows
        missing = _MISSING
        hour_ms = HOUR_MS
        at = -1
        # A `ClaudeEntry`'s fields, unpacked in their order.
        for ts, _s, _m, _r, _c, model, inp, out, read, write, write_1h, cost in entries:
            at += 1
            kind = 0
            per_request = None
            if cost is not None:
                kind = -1
            else:
                how = hows.get(model, missing)
                if how is missing:
                    how = self._how(model)
                if how is None:
                    pass
                elif how.__class__ is tuple:  # as ModelPrice.prompt_tier
                    prompt = inp + read + write
                    for tier, above in enumerate(how, 1):
                        if prompt > above:
                            kind = tier
                else:
                    per_request = how
            key = (-(-ts // hour_ms), model, kind)
            acc = groups.get(key)
            if acc is None:
                acc = groups[key] = [ts, order_of(at), ts, 0, 0, 0, 0, 0, 0, 0.0]
            elif ts <= acc[_FIRST]:
                if ts < acc[_FIRST] or order_of(at) < acc[_ORDER]:
                    acc[_FIRST] = ts
                    acc[_ORDER] = order_of(at)
            elif ts > acc[_LAST]:
                acc[_LAST] = ts
            acc[_ROWS] += 1
            acc[_INPUT] += inp
            acc[_OUTPUT] += out
            acc[_READ] += read
            acc[_WRITE] += write
            acc[_WRITE_1H] += write_1h
            if cost is not None:
                acc[_COST] += cost
            elif per_request is not None:
                acc[_COST] += per_request(inp, out, read, write, write_1h)

    def _price(self, model: str | None) -> ModelPrice | None:
        if model not in self._prices:
            self._prices[model] = self.table.lookup(model)
        return self._prices[model]

    def _how(self, model: str | None) -> Any:
        price = self._price(model)
        how: Any = None
        if price is not None and price.tiers:
            if self.table.tier_rule == "prompt":
                how = tuple(above for above, _ in price.tiers)
            else:
                how = price.request_cost(self.table.tier_rule)
        self._hows[model] = how
        return how

    def sums(self) -> dict[tuple[int, str | None, int], list[Any]]:
        return self.groups

    def merge(self, groups: dict[tuple[int, str | None, int], list[Any]]) -> None:
        """Add another process's `sums()`."""
        mine = self.groups
        for key, acc in groups.items():
            held = mine.get(key)
            if held is None:
                mine[key] = list(acc)
                continue
            if (acc[_FIRST], acc[_ORDER]) < (held[_FIRST], held[_ORDER]):
                held[_FIRST], held[_ORDER] = acc[_FIRST], acc[_ORDER]
            held[_LAST] = max(held[_LAST], acc[_LAST])
            for at in range(_ROWS, _COST + 1):
                held[at] += acc[at]

    def _cost(self, model: str | None, kind: int, acc: list[Any]) -> tuple[float, int]:
        """A group's cost and unpriced requests."""
        if kind < 0:
            return acc[_COST], 0
        price = self._price(model)
        if price is None:
            return 0.0, acc[_ROWS]
        how = self._hows.get(model)
        if how is not None and how.__class__ is not tuple:  # priced entry by entry
            return acc[_COST], 0
        counts = acc[_INPUT], acc[_OUTPUT], acc[_READ], acc[_WRITE], acc[_WRITE_1H]
        return price.cost_at(kind, *counts), 0

    def blocks(self, now: datetime) -> list[dict[str, Any]]:
        """The blocks at `now` (see the module docstring), oldest first."""
        now_ms = int(now.timestamp() * 1000)
        hours: dict[int, list[tuple[tuple[int, str | None, int], list[Any]]]] = {}
        for key, acc in self.groups.items():
            hours.setdefault(key[0], []).append((key, acc))
        out: list[dict[str, Any]] = []
        current: _Block | None = None
        for hour in sorted(hours):
            groups = sorted(hours[hour], key=lambda item: (item[1][_FIRST], item[1][_ORDER]))
            first = groups[0][1][_FIRST]
            if current is None:
                current = _Block(first - first % HOUR_MS, first)
            elif first - current.start > SESSION_MS or first - current.last > SESSION_MS:
                out.append(_finish(current, now_ms))
                if first - current.last > SESSION_MS:
                    out.append(_gap(current.last + SESSION_MS, first))
                current = _Block(first - first % HOUR_MS, first)
            current.last = max(acc[_LAST] for _, acc in groups)
            counts = current.counts
            for (_, model, kind), acc in groups:
                current.rows += acc[_ROWS]
                counts[0] += acc[_INPUT]
                counts[1] += acc[_OUTPUT]
                counts[2] += acc[_WRITE]
                counts[3] += acc[_READ]
                cost, unpriced = self._cost(model, kind, acc)
                current.cost += cost
                current.unpriced += unpriced
                if model and model != SYNTHETIC_MODEL:
                    current.firsts.append((acc[_FIRST], acc[_ORDER], model))
        if current is not None:
            out.append(_finish(current, now_ms))
        return out


_MISSING: Any = object()


class EntryPricer:
    """The `auto` cost of one Claude log entry: the reported cost, else the table's (None for
    a model without a price); each model looked up once (a lookup normalises the id with
    regular expressions)."""

    def __init__(self, table: PriceTable) -> None:
        self.table = table
        self.costs: dict[str | None, Callable[[int, int, int, int, int], float] | None] = {}

    def cost(self, entry: tuple[Any, ...]) -> float | None:
        _ts, _s, _m, _r, _c, model, inp, out, read, write, write_1h, cost = entry
        if cost is not None:
            return float(cost)
        price = self.costs.get(model, _MISSING)
        if price is _MISSING:
            found = self.table.lookup(model)
            price = self.costs[model] = (
                found.request_cost(self.table.tier_rule) if found is not None else None
            )
        return None if price is None else price(inp, out, read, write, write_1h)


def build_blocks(
    entries: Sequence[tuple[Any, ...]], table: PriceTable, now: datetime
) -> list[dict[str, Any]]:
    """The blocks of deduplicated Claude log `entries` (`ClaudeEntry` tuples, in the order
    of the logs, which orders entries of the same millisecond) at `now`, oldest first."""
    sums = HourSums(table)
    sums.add_entries(entries, _identity)
    return sums.blocks(now)


def _identity(at: int) -> int:
    return at


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
        "models": list(dict.fromkeys(model for _, _, model in block.firsts)),
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
