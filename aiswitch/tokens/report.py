"""The aggregation engine behind `aiswitch tokens report`.

Contract:

- Input: usage rows (`Row`, the compact form every reader produces; `rows_from_records` turns
  `LedgerRecord`s into rows) and `ReportOptions`. Output: a `Report` with `rows`, `totals` and
  `warnings`, serialisable with `to_json()` / `to_csv()`.
- Grouping keys (`by`, several at once): `day` (`YYYY-MM-DD`), `week` (ISO 8601 week,
  `YYYY-Www`, e.g. `2026-W47`: weeks start on Monday and the year is the ISO week-numbering
  year), `month` (`YYYY-MM`), `agent`, `preset`, `model`, `provider`, `run`, `session`,
  `host` (the base URL host a request went to), `branch` (its workspace's git branch) and
  `caller` (the MCP client that asked for the run through `aiswitch mcp`, `name/version`);
  all three null for CLI-log rows and pruned days. Days,
  weeks and months, and the inclusive `since`/`until` dates, are taken in the report's
  timezone (IANA name; default: the machine's local zone).
- Every row and the totals carry `input_tokens`, `output_tokens`, `cache_read_tokens`,
  `cache_write_tokens`, `reasoning_tokens`, `total_tokens` (input + output + cache read + cache
  write; reasoning is part of output), `cost_usd`, `unpriced_requests` and `requests`.
- Cost: `cost_usd` is the sum over the requests that have a price (per the cost mode: `auto`
  takes the CLI's reported cost when present, else calculates; `calculate` always calculates;
  `reported` only takes reported costs). Requests without one are counted in
  `unpriced_requests` and add nothing; `cost_usd` is null only when no request of the row has a
  price. An unknown model is therefore never shown as $0.
- Duplicates (same `LedgerRecord.dedupe_key()`: source, message id and request id) count once;
  the first one read wins. What the ledger and the CLIs' logs share is left out before
  (`aiswitch.tokens.overlap`).
- Options are checked where they are parsed (`aiswitch.tokens.report_options`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, tzinfo
from typing import Any, cast

from aiswitch.tokens.prices import (
    ModelPrice,
    PriceTable,
    parse_price_specs,
)
from aiswitch.tokens.records import ROW_INDEX, LedgerRecord
from aiswitch.tokens.report_options import ReportOptions, load_timezone, resolve_timezone_name
from aiswitch.tokens.rows import (
    R_AGENT,
    R_MESSAGE,
    R_MODEL,
    R_PRESET,
    R_PROVIDER,
    R_REQUEST,
    R_REQUESTS,
    R_RUN,
    R_SOURCE,
    R_SUMS,
    R_TS,
    row_from_record,
)
from aiswitch.tokens.times import SLOT_SECONDS, local_day

REPORT_SCHEMA_VERSION = 1
# Keys a prune rollup does not keep (its entries have no such field): null there.
_NOT_ROLLED_UP = frozenset({"host", "branch", "caller"})
COUNTERS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "unpriced_requests",
    "requests",
)
# Rows also say which part of `cost_usd` is only an API equivalent (subscription presets);
# the report's total of it is the top-level `api_equivalent_usd`.
ROW_COUNTERS = (*COUNTERS, "api_equivalent_usd")


@dataclass
class Report:
    """The result: one dict per group in `rows` (sorted by the group keys) and `totals`."""

    by: tuple[str, ...]
    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    timezone: str
    cost_mode: str
    since: date | None = None
    until: date | None = None
    warnings: list[str] = field(default_factory=list)
    prices_as_of: str | None = None
    # The part of the total `cost_usd` spent through subscription presets: not billed per
    # token, shown as what the same usage would cost through the API.
    api_equivalent_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA_VERSION,
            "by": list(self.by),
            "timezone": self.timezone,
            "cost_mode": self.cost_mode,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "prices_as_of": self.prices_as_of,
            "rows": self.rows,
            "totals": self.totals,
            "api_equivalent_usd": self.api_equivalent_usd,
            "warnings": self.warnings,
        }

    def to_json(self, *, indent: bool = True) -> str:
        return json.dumps(self.as_dict(), indent=2 if indent else None)

    def to_csv(self) -> str:
        """One line per row, then a `TOTAL` line; empty cells for missing values."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*self.by, *ROW_COUNTERS])
        for row in self.rows:
            writer.writerow([_cell(row.get(key)) for key in (*self.by, *ROW_COUNTERS)])
        total_line = ["TOTAL", *([""] * (len(self.by) - 1))]
        totals = {**self.totals, "api_equivalent_usd": self.api_equivalent_usd}
        writer.writerow([*total_line, *(_cell(totals.get(key)) for key in ROW_COUNTERS)])
        return out.getvalue()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        return cls(
            by=tuple(data["by"]),
            rows=list(data["rows"]),
            totals=dict(data["totals"]),
            timezone=data["timezone"],
            cost_mode=data["cost_mode"],
            since=date.fromisoformat(data["since"]) if data.get("since") else None,
            until=date.fromisoformat(data["until"]) if data.get("until") else None,
            warnings=list(data.get("warnings", [])),
            prices_as_of=data.get("prices_as_of"),
            api_equivalent_usd=float(data.get("api_equivalent_usd") or 0.0),
        )


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return value


class _Slots:
    """Calendar strings (day, week, month) of each 15-minute slot, computed once per slot."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self.cache: dict[int, tuple[str, str, str]] = {}

    def get(self, ts: float) -> tuple[str, str, str]:
        slot = int(ts // SLOT_SECONDS)
        found = self.cache.get(slot)
        if found is None:
            local = local_day(slot * SLOT_SECONDS, self.zone)
            iso = local.isocalendar()
            month = f"{local.year:04d}-{local.month:02d}"  # strftime drops year 1's zeros
            found = (f"{month}-{local.day:02d}", f"{iso.year:04d}-W{iso.week:02d}", month)
            self.cache[slot] = found
        return found


# A price cache miss (None is a cached "no price").
_MISSING: Any = object()


class _Pricer:
    """Price lookups memoised per (preset, model)."""

    def __init__(self, options: ReportOptions) -> None:
        self.table = options.prices or PriceTable.bundled()
        self.preset_tables: dict[str, PriceTable] = {
            preset: self.table.with_overrides(parse_price_specs(spec, f"preset {preset!r}"))
            for preset, spec in options.preset_prices.items()
        }
        self.cache: dict[tuple[str | None, str | None], ModelPrice | None] = {}

    def lookup(self, preset: str | None, model: str | None) -> ModelPrice | None:
        key = (preset, model)
        if key in self.cache:
            return self.cache[key]
        table = self.preset_tables.get(preset or "", self.table)
        found = table.lookup(model)
        self.cache[key] = found
        return found


def build_report(
    rows: Iterable[tuple[Any, ...]] | Iterable[LedgerRecord],
    options: ReportOptions | None = None,
    *,
    warnings: Sequence[str] = (),
    rollup: Iterable[Sequence[Any]] = (),
) -> Report:
    """Aggregate `rows` (or `LedgerRecord`s), and pruned `rollup` entries, as `options` say."""
    aggregator = Aggregator(options or ReportOptions())
    aggregator.add_rollup(rollup)
    aggregator.add(rows)
    return aggregator.finish(warnings)


# Accumulator slots of one group (a list, for speed in the hot loop).
A_INPUT, A_OUTPUT, A_READ, A_WRITE, A_REASONING, A_REQUESTS = range(6)
A_COST, A_PRICED, A_UNPRICED, A_API_EQUIVALENT = range(6, 10)
ACC_SIZE = 10

# A rollup entry (see aiswitch.tokens.transfer): the `Row` text fields, the token sums, then
# requests and the costs frozen at prune time.
(
    U_TS,
    U_SOURCE,
    U_AGENT,
    U_PRESET,
    U_PROVIDER,
    U_MODEL,
    U_RUN,
    U_SESSION,
) = range(8)
U_COUNTS = slice(8, 14)  # input, output, cache read, cache write, reasoning, cache write 1h
(
    U_REQUESTS,
    U_REPORTED_COST,
    U_REPORTED_REQUESTS,
    U_CALCULATED_COST,
    U_CALCULATED_REQUESTS,
    U_UNPRICED_REQUESTS,
) = range(14, 20)


@dataclass
class AggregateState:
    """What an `Aggregator` has summed so far; picklable, so worker processes can return it.

    `seen` holds the dedupe keys met, so that states of consecutive parts of one input can be
    merged exactly (`Aggregator.merge` refuses states whose keys overlap: the caller then
    aggregates the parts in order in one process)."""

    groups: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict)
    linear: dict[tuple[Any, ...], list[int]] = field(default_factory=dict)
    seen: set[tuple[str, str, str]] = field(default_factory=set)

    def sums(self) -> dict[str, Any]:
        """Every field but `seen`, as plain values (what a worker process sends back)."""
        return {name: value for name, value in vars(self).items() if name != "seen"}

    @classmethod
    def from_sums(cls, sums: dict[str, Any]) -> AggregateState:
        """The state of `sums()`, with an empty `seen`."""
        return cls(**sums)


class OverlappingStates(Exception):
    """Two parts hold the same dedupe key: only an in-order pass knows which one counts."""


class Aggregator:
    """The report engine, incremental: `add` rows (any number of times), `finish` a Report."""

    def __init__(self, options: ReportOptions, state: AggregateState | None = None) -> None:
        self.options = options
        self.state = state or AggregateState()
        self.zone = load_timezone(options.timezone)
        self.slots = _Slots(self.zone)
        self.pricer = _Pricer(options)
        self.subscription = frozenset(options.subscription_presets)

    def _filters(self) -> _Filters:
        return _Filters(self.options, self.slots)

    def add(
        self,
        rows: Iterable[tuple[Any, ...]] | Iterable[LedgerRecord],
        *,
        deduplicated: bool = False,
    ) -> None:
        """Sum `rows`. `deduplicated`: the caller guarantees that no two rows, here or in
        earlier calls, share a source, message id and request id (Claude entries after
        `dedupe_claude_entries`), so the report's own duplicate check is skipped."""
        options = self.options
        pricer = self.pricer
        tier_rule = pricer.table.tier_rule
        mode = options.cost_mode
        by = options.by
        filters = self._filters()
        since, until = filters.since, filters.until
        agents, presets = filters.agents, filters.presets
        runs, models = filters.runs, filters.models
        model_ok = filters.model_ok
        need_time = filters.need_time
        slots = self.slots
        # The slot and price caches are read inline (a method call per row costs more than
        # the lookup); a miss goes through `_Slots.get` / `_Pricer.lookup`, which fill them.
        # A float slot number finds its int key: equal numbers hash alike.
        slot_cache = slots.cache
        price_cache = pricer.cache
        missing = _MISSING
        subscription = self.subscription
        getters = [_getter(name, pricer) for name in by]
        single_time = _TIME_INDEX.get(by[0]) if len(by) == 1 else None
        slot: tuple[str, str, str] = ("", "", "")
        groups = self.state.groups
        # Prices linear in the counts (no tiers, or within the prompt's tier) are applied to
        # sums at `finish`: linear[(group, (preset, model), tier)] = token sums.
        linear = self.state.linear
        seen = self.state.seen
        per_counter = tier_rule == "per_counter"
        check_duplicates = not deduplicated
        take_reported = mode != "calculate"
        only_reported = mode == "reported"

        # Rows may be plain tuples (from the index): fields are read by position (faster).
        for item in rows:
            row: tuple[Any, ...] = item if isinstance(item, tuple) else row_from_record(item)
            message_id = row[R_MESSAGE]
            if message_id and check_duplicates:
                request_id = row[R_REQUEST]
                if request_id:
                    dedupe = (row[R_SOURCE], message_id, request_id)
                    if dedupe in seen:
                        continue
                    seen.add(dedupe)
            if agents and row[R_AGENT] not in agents:
                continue
            if presets and row[R_PRESET] not in presets:
                continue
            if runs and row[R_RUN] not in runs:
                continue
            model = row[R_MODEL]
            if models and not model_ok(model):
                continue
            if need_time:
                ts = row[R_TS]
                found_slot = slot_cache.get(ts // SLOT_SECONDS)
                slot = slots.get(ts) if found_slot is None else found_slot
                if since is not None and slot[0] < since:
                    continue
                if until is not None and slot[0] > until:
                    continue
            if single_time is not None:
                key: tuple[Any, ...] = (slot[single_time],)
            else:
                key = tuple([getter(row, slot) for getter in getters])
            acc = groups.get(key)
            if acc is None:
                acc = groups[key] = [0, 0, 0, 0, 0, 0, 0.0, 0, 0, 0.0]
            inp, out, read, write, reasoning, write_1h, cost, cost_source = row[R_SUMS]
            acc[0] += inp
            acc[1] += out
            acc[2] += read
            acc[3] += write
            acc[4] += reasoning
            requests = row[R_REQUESTS]
            acc[5] += requests
            preset = row[R_PRESET]
            if cost is not None and take_reported and cost_source == "reported":
                acc[6] += cost
                acc[7] += requests
                if subscription and preset in subscription:
                    acc[9] += cost
                continue
            if only_reported:
                acc[8] += requests
                continue
            pair = (preset, model)
            price = price_cache.get(pair, missing)
            if price is missing:
                price = pricer.lookup(preset, model)
            if price is None:
                acc[8] += requests
                continue
            if not price.tiers:
                lkey = (key, pair, 0)
            elif per_counter:  # tiers per counter: not linear, priced request by request
                cost = price.cost(inp, out, read, write, write_1h, tier_rule)
                acc[6] += cost
                acc[7] += requests
                if subscription and preset in subscription:
                    acc[9] += cost
                continue
            else:  # linear within the tier the prompt falls in
                lkey = (key, pair, price.prompt_tier(inp + read + write))
            sums = linear.get(lkey)
            if sums is None:
                linear[lkey] = [inp, out, read, write, write_1h]
            else:
                sums[0] += inp
                sums[1] += out
                sums[2] += read
                sums[3] += write
                sums[4] += write_1h
            acc[7] += requests

    def add_rollup(self, entries: Iterable[Sequence[Any]]) -> None:
        """Count pruned usage: sums per slot and key, with costs frozen at prune time.

        Every cost mode takes the frozen cost, except `reported`, which keeps only its
        reported part (the calculated part counts as unpriced)."""
        filters = self._filters()
        mode = self.options.cost_mode
        getters = [
            _none if name in _NOT_ROLLED_UP else _getter(name, self.pricer)
            for name in self.options.by
        ]
        slot: tuple[str, str, str] = ("", "", "")
        groups = self.state.groups
        for entry in entries:
            if filters.agents and entry[U_AGENT] not in filters.agents:
                continue
            if filters.presets and entry[U_PRESET] not in filters.presets:
                continue
            if filters.runs and entry[U_RUN] not in filters.runs:
                continue
            if filters.models and not filters.model_ok(entry[U_MODEL]):
                continue
            if filters.need_time:
                slot = self.slots.get(entry[U_TS])
                if filters.since is not None and slot[0] < filters.since:
                    continue
                if filters.until is not None and slot[0] > filters.until:
                    continue
            # A rollup entry has the text fields of a Row in the same positions.
            key = tuple([getter(entry, slot) for getter in getters])  # type: ignore[arg-type]
            acc = groups.get(key)
            if acc is None:
                acc = groups[key] = [0, 0, 0, 0, 0, 0, 0.0, 0, 0, 0.0]
            counts = entry[U_COUNTS]
            for index in range(5):
                acc[index] += counts[index]
            acc[A_REQUESTS] += entry[U_REQUESTS]
            cost = entry[U_REPORTED_COST]
            acc[A_PRICED] += entry[U_REPORTED_REQUESTS]
            acc[A_UNPRICED] += entry[U_UNPRICED_REQUESTS]
            if mode == "reported":
                acc[A_UNPRICED] += entry[U_CALCULATED_REQUESTS]
            else:
                cost += entry[U_CALCULATED_COST]
                acc[A_PRICED] += entry[U_CALCULATED_REQUESTS]
            acc[A_COST] += cost
            if entry[U_PRESET] in self.subscription:
                acc[A_API_EQUIVALENT] += cost

    def merge(self, other: AggregateState) -> None:
        """Add the state of the next part of the input (see `AggregateState`)."""
        if not self.state.seen.isdisjoint(other.seen):
            raise OverlappingStates
        self.state.seen |= other.seen
        _add_sums(self.state.groups, other.groups)
        _add_sums(self.state.linear, other.linear)

    def finish(self, warnings: Sequence[str] = ()) -> Report:
        options = self.options
        pricer = self.pricer
        groups = {key: list(acc) for key, acc in self.state.groups.items()}
        for (key, (preset, model), tier), sums in self.state.linear.items():
            price = pricer.lookup(preset, model)
            assert price is not None  # only priced models were summed
            cost = price.cost_at(tier, sums[0], sums[1], sums[2], sums[3], sums[4])
            groups[key][A_COST] += cost
            if preset in self.subscription:
                groups[key][A_API_EQUIVALENT] += cost
        by = options.by
        out_rows = [
            {
                **dict(zip(by, key, strict=True)),
                **_counters(acc),
                "api_equivalent_usd": round(float(acc[A_API_EQUIVALENT]), 10),
            }
            for key, acc in sorted(groups.items(), key=lambda item: _sort_key(item[0]))
        ]
        total: list[Any] = [0, 0, 0, 0, 0, 0, 0.0, 0, 0, 0.0]
        for acc in groups.values():
            for index, value in enumerate(acc):
                total[index] += value
        return Report(
            by=by,
            rows=out_rows,
            totals=_counters(total),
            timezone=resolve_timezone_name(options.timezone),
            cost_mode=options.cost_mode,
            since=options.since,
            until=options.until,
            warnings=list(warnings),
            prices_as_of=pricer.table.as_of,
            api_equivalent_usd=round(float(total[A_API_EQUIVALENT]), 10),
        )


def _add_sums(into: dict[Any, list[Any]], other: Mapping[Any, Sequence[Any]]) -> None:
    """Add `other`'s lists of sums to `into`'s, key by key, position by position."""
    for key, sums in other.items():
        mine = into.get(key)
        if mine is None:
            into[key] = list(sums)
        else:
            for index, value in enumerate(sums):
                mine[index] += value


class _Filters:
    """The row filters of a report, prepared once."""

    def __init__(self, options: ReportOptions, slots: _Slots) -> None:
        from aiswitch.tokens.prices import normalise_model_id

        self.since = options.since.isoformat() if options.since else None
        self.until = options.until.isoformat() if options.until else None
        self.agents = set(options.agents)
        self.presets = set(options.presets)
        self.runs = set(options.runs)
        self.models = set(options.models)
        self._norms = {normalise_model_id(model) for model in self.models}
        self._normalise = normalise_model_id
        self._model_ok: dict[str | None, bool] = {}
        self.need_time = (
            self.since is not None
            or self.until is not None
            or any(key in _TIME_INDEX for key in options.by)
        )

    def model_ok(self, model: str | None) -> bool:
        ok = self._model_ok.get(model)
        if ok is None:
            ok = model in self.models or (
                model is not None and self._normalise(model) in self._norms
            )
            self._model_ok[model] = ok
        return ok


_TIME_INDEX = {"day": 0, "week": 1, "month": 2}
_Getter = Callable[[tuple[Any, ...], tuple[str, str, str]], str | None]


def _getter(name: str, pricer: _Pricer) -> _Getter:
    """How to read one grouping key from a row (and its calendar slot)."""
    if name in _TIME_INDEX:
        index = _TIME_INDEX[name]
        return lambda row, slot: slot[index]
    if name == "provider":

        def provider(row: tuple[Any, ...], slot: tuple[str, str, str]) -> str | None:
            if row[R_PROVIDER]:
                return cast(str, row[R_PROVIDER])
            # Logs of the CLIs name no provider: the vendor of the priced model stands in.
            price = pricer.lookup(row[R_PRESET], row[R_MODEL])
            return price.provider if price is not None else None

        return provider
    field_index = ROW_INDEX[_ROW_FIELD[name]]
    return lambda row, slot: cast(str | None, row[field_index])


def _none(row: tuple[Any, ...], slot: tuple[str, str, str]) -> str | None:
    return None


_ROW_FIELD = {
    "agent": "agent",
    "preset": "preset",
    "model": "model",
    "run": "run_id",
    "session": "session_id",
    "host": "host",
    "branch": "branch",
    "caller": "caller",
}


def _sort_key(key: tuple[Any, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((value is not None, str(value or "")) for value in key)


def _counters(acc: Sequence[Any]) -> dict[str, Any]:
    requests = int(acc[A_REQUESTS])
    priced = int(acc[A_PRICED])
    unpriced = int(acc[A_UNPRICED])
    cost: float | None = round(float(acc[A_COST]), 10)
    if priced == 0 and unpriced > 0:
        cost = None
    return {
        "input_tokens": int(acc[0]),
        "output_tokens": int(acc[1]),
        "cache_read_tokens": int(acc[2]),
        "cache_write_tokens": int(acc[3]),
        "reasoning_tokens": int(acc[4]),
        "total_tokens": int(acc[0] + acc[1] + acc[2] + acc[3]),
        "cost_usd": cost,
        "unpriced_requests": unpriced,
        "requests": requests,
    }
