"""What `aiswitch tokens report` is asked for: `ReportOptions`, built and checked from the
command line's strings by `parse_report_options` (a bad key, date, timezone or cost mode is a
one-line `UsageError`), and the report's timezone."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from aiswitch.errors import UsageError
from aiswitch.tokens.prices import CostMode, PriceTable, check_cost_mode

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
