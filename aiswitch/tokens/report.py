"""The aggregation engine behind `aiswitch tokens report`.

Contract:

- Input: usage rows (`Row`, the compact form every reader produces; `rows_from_records` turns
  `LedgerRecord`s into rows) and `ReportOptions`. Output: a `Report` with `rows`, `totals` and
  `warnings`, serialisable with `to_json()` / `to_csv()`.
- Grouping keys (`by`, several at once): `day` (`YYYY-MM-DD`), `week` (ISO 8601 week,
  `YYYY-Www`, e.g. `2026-W47`: weeks start on Monday and the year is the ISO week-numbering
  year), `month` (`YYYY-MM`), `agent`, `preset`, `model`, `provider`, `run`, `session`. Days,
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
from typing import Any, NamedTuple, cast

from aiswitch.errors import UsageError
from aiswitch.tokens.prices import (
    CostMode,
    ModelPrice,
    PriceTable,
    check_cost_mode,
    parse_price_specs,
)
from aiswitch.tokens.records import LedgerRecord

REPORT_SCHEMA_VERSION = 1
BY_KEYS = ("day", "week", "month", "agent", "preset", "model", "provider", "run", "session")
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
# Every UTC offset in use is a multiple of 15 minutes, so all instants of one 15-minute slot
# fall on the same local day: the slot's calendar strings are computed once and reused.
TIME_SLOT_SECONDS = 900


class Row(NamedTuple):
    """One usage event in compact form (what readers yield and the index stores)."""

    ts: float  # seconds since the epoch, UTC
    source: str
    agent: str | None
    preset: str | None
    provider: str | None
    model: str | None
    run_id: str | None
    session_id: str | None
    message_id: str | None
    request_id: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cache_write_1h_tokens: int
    cost_usd: float | None
    cost_source: str


(
    R_TS,
    R_SOURCE,
    R_AGENT,
    R_PRESET,
    R_PROVIDER,
    R_MODEL,
    R_RUN,
    R_SESSION,
    R_MESSAGE,
    R_REQUEST,
    R_INPUT,
    R_OUTPUT,
    R_CACHE_READ,
    R_CACHE_WRITE,
    R_REASONING,
    R_CACHE_WRITE_1H,
    R_COST,
    R_COST_SOURCE,
) = range(18)


def row_from_record(record: LedgerRecord) -> Row:
    ts = record.ts if record.ts.tzinfo else record.ts.replace(tzinfo=UTC)
    return Row(
        ts.timestamp(),
        record.source,
        record.agent,
        record.preset,
        record.provider,
        record.model,
        record.run_id,
        record.session_id,
        record.message_id,
        record.request_id,
        record.input_tokens,
        record.output_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.reasoning_tokens,
        int(getattr(record, "cache_write_1h_tokens", 0) or 0),
        record.cost_usd,
        record.cost_source,
    )


def rows_from_records(records: Iterable[LedgerRecord]) -> Iterator[Row]:
    for record in records:
        yield row_from_record(record)


def record_from_row(row: Row) -> LedgerRecord:
    return LedgerRecord(
        ts=datetime.fromtimestamp(row.ts, UTC),
        source=row.source,
        agent=row.agent,
        preset=row.preset,
        provider=row.provider,
        model=row.model,
        run_id=row.run_id,
        session_id=row.session_id,
        message_id=row.message_id,
        request_id=row.request_id,
        input_tokens=row.input_tokens,
        output_tokens=row.output_tokens,
        cache_read_tokens=row.cache_read_tokens,
        cache_write_tokens=row.cache_write_tokens,
        reasoning_tokens=row.reasoning_tokens,
        cost_usd=row.cost_usd,
        cost_source=row.cost_source,
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
            "warnings": self.warnings,
        }

    def to_json(self, *, indent: bool = True) -> str:
        return json.dumps(self.as_dict(), indent=2 if indent else None)

    def to_csv(self) -> str:
        """One line per row, then a `TOTAL` line; empty cells for missing values."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*self.by, *COUNTERS])
        for row in self.rows:
            writer.writerow([_cell(row.get(key)) for key in (*self.by, *COUNTERS)])
        total_line = ["TOTAL", *([""] * (len(self.by) - 1))]
        writer.writerow([*total_line, *(_cell(self.totals.get(key)) for key in COUNTERS)])
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
        slot = int(ts // TIME_SLOT_SECONDS)
        found = self.cache.get(slot)
        if found is None:
            local = datetime.fromtimestamp(slot * TIME_SLOT_SECONDS, self.zone)
            iso = local.isocalendar()
            found = (
                local.strftime("%Y-%m-%d"),
                f"{iso.year:04d}-W{iso.week:02d}",
                local.strftime("%Y-%m"),
            )
            self.cache[slot] = found
        return found


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
) -> Report:
    """Aggregate `rows` (or `LedgerRecord`s) as `options` say."""
    options = options or ReportOptions()
    zone = load_timezone(options.timezone)
    slots = _Slots(zone)
    pricer = _Pricer(options)
    tier_rule = pricer.table.tier_rule
    mode = options.cost_mode
    by = options.by
    since = options.since.isoformat() if options.since else None
    until = options.until.isoformat() if options.until else None
    agents = set(options.agents)
    presets = set(options.presets)
    runs = set(options.runs)
    models = set(options.models)
    from aiswitch.tokens.prices import normalise_model_id

    model_norms = {normalise_model_id(model) for model in models}
    model_ok: dict[str | None, bool] = {}
    need_time = (
        since is not None or until is not None or any(key in ("day", "week", "month") for key in by)
    )

    getters = [_getter(name, pricer) for name in by]
    single_time = _TIME_INDEX.get(by[0]) if len(by) == 1 else None
    slot: tuple[str, str, str] = ("", "", "")

    # groups[key] = [in, out, cache_read, cache_write, reasoning, requests, cost, priced, unpriced]
    groups: dict[tuple[Any, ...], list[Any]] = {}
    # Linear prices are applied to sums: linear[(group, preset, model)] = token sums.
    linear: dict[tuple[tuple[Any, ...], str | None, str | None], list[int]] = {}
    seen: set[str] = set()

    # Rows may be plain tuples (from the index): fields are read by position, which is faster.
    for item in rows:
        row: tuple[Any, ...] = item if isinstance(item, tuple) else row_from_record(item)
        message_id = row[R_MESSAGE]
        if message_id and row[R_REQUEST]:
            dedupe = f"{row[R_SOURCE]}\x00{message_id}\x00{row[R_REQUEST]}"
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
        if models:
            ok = model_ok.get(model)
            if ok is None:
                ok = model in models or (
                    model is not None and normalise_model_id(model) in model_norms
                )
                model_ok[model] = ok
            if not ok:
                continue
        if need_time:
            slot = slots.get(row[R_TS])
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
            acc = groups[key] = [0, 0, 0, 0, 0, 0, 0.0, 0, 0]
        inp, out, read, write, reasoning, write_1h, cost = row[R_INPUT:R_COST_SOURCE]
        acc[0] += inp
        acc[1] += out
        acc[2] += read
        acc[3] += write
        acc[4] += reasoning
        acc[5] += 1
        if mode != "calculate" and cost is not None and row[R_COST_SOURCE] == "reported":
            acc[6] += cost
            acc[7] += 1
            continue
        if mode == "reported":
            acc[8] += 1
            continue
        preset = row[R_PRESET]
        price = pricer.lookup(preset, model)
        if price is None:
            acc[8] += 1
        elif price.linear:
            lkey = (key, preset, model)
            sums = linear.get(lkey)
            if sums is None:
                sums = linear[lkey] = [0, 0, 0, 0, 0]
            sums[0] += inp
            sums[1] += out
            sums[2] += read
            sums[3] += write
            sums[4] += write_1h
            acc[7] += 1
        else:
            acc[6] += price.cost(inp, out, read, write, write_1h, tier_rule)
            acc[7] += 1

    for (key, preset, model), sums in linear.items():
        price = pricer.lookup(preset, model)
        assert price is not None  # only priced models were summed
        groups[key][6] += price.cost(sums[0], sums[1], sums[2], sums[3], sums[4], tier_rule)

    out_rows = [
        {**dict(zip(by, key, strict=True)), **_counters(acc)}
        for key, acc in sorted(groups.items(), key=lambda item: _sort_key(item[0]))
    ]
    total = [0, 0, 0, 0, 0, 0, 0.0, 0, 0]
    for acc in groups.values():
        for index, value in enumerate(acc):
            total[index] += value
    return Report(
        by=by,
        rows=out_rows,
        totals=_counters(total),
        timezone=resolve_timezone_name(options.timezone),
        cost_mode=mode,
        since=options.since,
        until=options.until,
        warnings=list(warnings),
        prices_as_of=pricer.table.as_of,
    )


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
    field_index = Row._fields.index(_ROW_FIELD[name])
    return lambda row, slot: cast(str | None, row[field_index])


_ROW_FIELD = {
    "agent": "agent",
    "preset": "preset",
    "model": "model",
    "run": "run_id",
    "session": "session_id",
}


def _sort_key(key: tuple[Any, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((value is not None, str(value or "")) for value in key)


def _counters(acc: Sequence[Any]) -> dict[str, Any]:
    requests = int(acc[5])
    priced = int(acc[7])
    unpriced = int(acc[8])
    cost: float | None = round(float(acc[6]), 10)
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


def merge_ledger_and_cli(
    ledger: Iterable[tuple[Any, ...]], cli: Iterable[tuple[Any, ...]]
) -> Iterator[tuple[Any, ...]]:
    """The ledger's rows, then the CLI-log rows the ledger does not already hold.

    A CLI-log row is already held when a ledger row has its message id and request id, and the
    same session id (or either side has none): what aiswitch drove never counts twice.
    """
    known: dict[tuple[str, str], set[str | None]] = {}
    for row in ledger:
        if row[R_MESSAGE] and row[R_REQUEST]:
            known.setdefault((row[R_MESSAGE], row[R_REQUEST]), set()).add(row[R_SESSION])
        yield row
    for row in cli:
        if row[R_MESSAGE] and row[R_REQUEST]:
            sessions = known.get((row[R_MESSAGE], row[R_REQUEST]))
            session = row[R_SESSION]
            if sessions is not None and (
                session is None or None in sessions or session in sessions
            ):
                continue
        yield row
