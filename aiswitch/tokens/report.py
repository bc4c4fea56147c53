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
  the first one read wins. `merge_ledger_and_cli` drops CLI-log rows that the ledger already
  holds (same message id and request id, and the same session when both sides know it).
- Bad `by` keys, dates, timezones or cost modes raise `UsageError` with a one-line message.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any, cast

from aiswitch.errors import UsageError
from aiswitch.tokens.prices import (
    CostMode,
    ModelPrice,
    PriceTable,
    check_cost_mode,
    parse_price_specs,
)
from aiswitch.tokens.records import ROW_FIELDS, ROW_INDEX, LedgerRecord
from aiswitch.tokens.times import SLOT_SECONDS, local_day

REPORT_SCHEMA_VERSION = 1
BY_KEYS = (
    "day",
    "week",
    "month",
    "agent",
    "preset",
    "model",
    "provider",
    "run",
    "session",
    "host",
    "branch",
    "caller",
)
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


# A report row: one usage event in compact form (what readers yield and the index stores),
# the values of `records.ROW_FIELDS` in that order, the time as seconds since the epoch (UTC).
Row = tuple[Any, ...]

R_TS = ROW_INDEX["ts"]
R_SOURCE = ROW_INDEX["source"]
R_AGENT = ROW_INDEX["agent"]
R_PRESET = ROW_INDEX["preset"]
R_PROVIDER = ROW_INDEX["provider"]
R_MODEL = ROW_INDEX["model"]
R_RUN = ROW_INDEX["run_id"]
R_SESSION = ROW_INDEX["session_id"]
R_MESSAGE = ROW_INDEX["message_id"]
R_REQUEST = ROW_INDEX["request_id"]
R_INPUT = ROW_INDEX["input_tokens"]
R_OUTPUT = ROW_INDEX["output_tokens"]
R_CACHE_READ = ROW_INDEX["cache_read_tokens"]
R_CACHE_WRITE = ROW_INDEX["cache_write_tokens"]
R_REASONING = ROW_INDEX["reasoning_tokens"]
R_CACHE_WRITE_1H = ROW_INDEX["cache_write_1h_tokens"]
R_COST = ROW_INDEX["cost_usd"]
R_COST_SOURCE = ROW_INDEX["cost_source"]
R_REQUESTS = ROW_INDEX["requests"]
# The counters and the cost, read in one slice (declared next to one another, in this order).
_R_SUMS = slice(R_INPUT, R_COST_SOURCE + 1)
if ROW_FIELDS[_R_SUMS] != (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cache_write_1h_tokens",
    "cost_usd",
    "cost_source",
):
    raise TypeError("LedgerRecord declares the counters and the cost together, in this order")
_ROW_REST = ROW_FIELDS[1:]


def row_from_record(record: LedgerRecord) -> Row:
    ts = record.ts if record.ts.tzinfo else record.ts.replace(tzinfo=UTC)
    return (ts.timestamp(), *[getattr(record, name) for name in _ROW_REST])


def rows_from_records(records: Iterable[LedgerRecord]) -> Iterator[Row]:
    for record in records:
        yield row_from_record(record)


def record_from_row(row: Row) -> LedgerRecord:
    return LedgerRecord(
        ts=datetime.fromtimestamp(row[R_TS], UTC), **dict(zip(_ROW_REST, row[1:], strict=True))
    )


@dataclass(frozen=True)
class ReportOptions:
    """What to report. Build it with `parse_report_options` from CLI strings."""

    by: tuple[str, ...] = ("day",)
    since: date | None = None
    until: date | None = None
    agents: tuple[str, ...] = ()
    presets: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    timezone: str | None = None  # IANA name; None: the machine's local zone
    cost_mode: CostMode = "auto"
    prices: PriceTable | None = None  # None: the bundled table
    # Per-preset price overrides: preset name -> {model: rates per million}.
    preset_prices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Presets billed by subscription: their cost is an API equivalent, not money spent.
    subscription_presets: tuple[str, ...] = ()

    def cache_key(self) -> str:
        """A stable text that changes whenever the report's result could change."""
        prices = self.prices or PriceTable.bundled()
        return json.dumps(
            [
                list(self.by),
                self.since.isoformat() if self.since else None,
                self.until.isoformat() if self.until else None,
                list(self.agents),
                list(self.presets),
                list(self.models),
                list(self.runs),
                resolve_timezone_name(self.timezone),
                self.cost_mode,
                prices.fingerprint(),
                json.dumps(self.preset_prices, sort_keys=True, default=str),
                sorted(self.subscription_presets),
            ]
        )


def parse_by(value: str | Sequence[str]) -> tuple[str, ...]:
    parts = value.split(",") if isinstance(value, str) else list(value)
    keys = tuple(part.strip() for part in parts if part.strip())
    if not keys:
        raise UsageError(f"--by needs at least one key (choose from {', '.join(BY_KEYS)})")
    for key in keys:
        if key not in BY_KEYS:
            raise UsageError(f"unknown --by key {key!r} (choose from {', '.join(BY_KEYS)})")
    if len(set(keys)) != len(keys):
        raise UsageError(f"--by lists a key twice: {','.join(keys)}")
    return keys


def parse_date(value: str | date | None, flag: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    text = value.strip()
    if len(text) == 8 and text.isdigit():  # ccusage's YYYYMMDD form
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag}: {value!r} is not a date (use YYYY-MM-DD)") from None


def load_timezone(name: str | None) -> tzinfo:
    """The IANA zone `name`, or the machine's local zone when `name` is None."""
    if name is None:
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(f"--timezone: unknown timezone {name!r} (use an IANA name)") from None


def resolve_timezone_name(name: str | None) -> str:
    if name is not None:
        return name
    zone = load_timezone(None)
    key = getattr(zone, "key", None)
    return str(key) if key else f"local:{zone.tzname(datetime.now())}"


def parse_report_options(
    *,
    by: str | Sequence[str] = "day",
    since: str | date | None = None,
    until: str | date | None = None,
    agents: Sequence[str] = (),
    presets: Sequence[str] = (),
    models: Sequence[str] = (),
    runs: Sequence[str] = (),
    timezone: str | None = None,
    cost_mode: str = "auto",
    prices: PriceTable | None = None,
    preset_prices: Mapping[str, Mapping[str, Any]] | None = None,
    subscription_presets: Sequence[str] = (),
) -> ReportOptions:
    """Validated options from CLI-shaped values; any bad value is a one-line `UsageError`."""
    since_date = parse_date(since, "--since")
    until_date = parse_date(until, "--until")
    if since_date and until_date and since_date > until_date:
        raise UsageError(f"--since {since_date} is after --until {until_date}")
    load_timezone(timezone)
    return ReportOptions(
        by=parse_by(by),
        since=since_date,
        until=until_date,
        agents=tuple(agents),
        presets=tuple(presets),
        models=tuple(models),
        runs=tuple(runs),
        timezone=timezone,
        cost_mode=check_cost_mode(cost_mode),
        prices=prices,
        preset_prices=dict(preset_prices or {}),
        subscription_presets=tuple(sorted(set(subscription_presets))),
    )


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
            inp, out, read, write, reasoning, write_1h, cost, cost_source = row[_R_SUMS]
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


class LedgerKeys:
    """What the ledger holds of the CLIs' requests, for `--source all`.

    `requests`: each (message id, request id) of a ledger row, with the session ids it was
    seen with. `sessions`: the session ids of ledger rows that have no ids (a task whose CLI
    log did not account for its usage is recorded as the stream's sums, one row per model):
    such a row stands for every request of its session's task, so the CLI's log rows of that
    session are the ledger's too. (A request made in such a session outside aiswitch, after
    it, is then counted by the ledger's rows only.)"""

    __slots__ = ("requests", "sessions")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], set[str | None]] = {}
        self.sessions: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.requests or self.sessions)


def ledger_keys(ledger: Iterable[tuple[Any, ...]]) -> LedgerKeys:
    """The (message id, request id) pairs of the ledger's rows, with their sessions, and the
    sessions of its rows without ids."""
    known = LedgerKeys()
    requests = known.requests
    for row in ledger:
        if row[R_MESSAGE] and row[R_REQUEST]:
            requests.setdefault((row[R_MESSAGE], row[R_REQUEST]), set()).add(row[R_SESSION])
        elif row[R_SESSION]:
            known.sessions.add(row[R_SESSION])
    return known


def held_by_ledger(row: tuple[Any, ...], known: LedgerKeys) -> bool:
    """Whether a CLI-log row is one the ledger already holds: the same message id and
    request id, and the same session id (or either side has none); or a row of a session
    the ledger holds as sums (`LedgerKeys.sessions`)."""
    session = row[R_SESSION]
    if session is not None and session in known.sessions:
        return True
    if not (row[R_MESSAGE] and row[R_REQUEST]):
        return False
    sessions = known.requests.get((row[R_MESSAGE], row[R_REQUEST]))
    return sessions is not None and (session is None or None in sessions or session in sessions)


def merge_ledger_and_cli(
    ledger: Iterable[tuple[Any, ...]], cli: Iterable[tuple[Any, ...]]
) -> Iterator[tuple[Any, ...]]:
    """The ledger's rows, then the CLI-log rows the ledger does not already hold
    (`held_by_ledger`): what aiswitch drove never counts twice."""
    rows = list(ledger)
    known = ledger_keys(rows)
    yield from rows
    for row in cli:
        if not held_by_ledger(row, known):
            yield row
