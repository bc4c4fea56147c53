"""Quotas: daily and monthly token and USD limits per agent or preset, enforced before a task.

Contract:

- Stored in `config/quotas.yaml` (mode 0600), changed only inside the `quotas` lock with an
  atomic write (`StateStore`):

      version: 1
      agents:
        claude: {daily_tokens: 2000000, monthly_usd: 50.0}
      presets:
        kimi: {daily_usd: 5.0}

- `set_quota` checks that the agent (`AgentRegistry`) or preset (`PresetStore`) exists, then
  merges the given limits into that target's (limits not given are kept); `clear_quota`
  removes one target's limits, or all. Limits must be positive.
- `make_quota_check(home)` returns the function `aiswitch run` calls once per task before it
  starts (through `aiswitch.tokens.quota_check.check_for`, which has none to call without a
  quotas file): `check(agent, preset)` raises `QuotaExceededError` (exit 6) when that agent's
  or preset's usage has reached any of its limits. Usage is the ledger's (and the prune
  rollup's, through the report machinery and its caches): today and this calendar month in
  the local timezone (`timezone=` overrides), `total_tokens` for token limits and `cost_usd`
  for USD limits (for a `billing: subscription` preset that is the API-equivalent cost). A
  quota stops the next task, never one that is running (budgets do that: `run --budget-*`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime
from typing import Any, Final, Literal

from aiswitch.errors import ConfigError, QuotaExceededError, UsageError
from aiswitch.home import Home
from aiswitch.tokens.money import format_usd
from aiswitch.tokens.quota_check import QUOTAS_FILE as QUOTAS_FILE  # where it is declared
from aiswitch.tokens.quota_check import QuotaCheck, quotas_path

LOCK_RESOURCE: Final = "quotas"
FORMAT_VERSION: Final = 1
Kind = Literal["agent", "preset"]
KINDS: Final = {"agent": "agents", "preset": "presets"}


@dataclass(frozen=True)
class Limits:
    """The limits of one agent or preset; None means no limit."""

    daily_tokens: int | None = None
    daily_usd: float | None = None
    monthly_tokens: int | None = None
    monthly_usd: float | None = None

    def merged(self, other: Limits) -> Limits:
        """These limits with every limit `other` sets replacing ours."""
        values = {f.name: getattr(other, f.name) for f in fields(self)}
        return Limits(
            **{
                name: value if value is not None else getattr(self, name)
                for name, value in values.items()
            }
        )

    def as_dict(self) -> dict[str, int | float]:
        return {name: value for name, value in asdict(self).items() if value is not None}

    def empty(self) -> bool:
        return not self.as_dict()


@dataclass
class Quotas:
    agents: dict[str, Limits]
    presets: dict[str, Limits]

    def of(self, kind: Kind) -> dict[str, Limits]:
        return self.agents if kind == "agent" else self.presets

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "agents": {name: lim.as_dict() for name, lim in sorted(self.agents.items())},
            "presets": {name: lim.as_dict() for name, lim in sorted(self.presets.items())},
        }


def _limits(raw: object, where: str) -> Limits:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of limits")
    known = {f.name for f in fields(Limits)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown limit {sorted(unknown)[0]!r}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if value is None:
            continue
        number_ok = isinstance(value, int | float) and not isinstance(value, bool)
        if name.endswith("_tokens") and not (isinstance(value, int) and number_ok):
            raise ConfigError(f"{where}: {name} must be a whole number of tokens")
        if not number_ok or value <= 0:
            raise ConfigError(f"{where}: {name} must be a positive number")
        values[name] = value
    return Limits(**values)


def load_quotas(home: Home) -> Quotas:
    """The quotas file, parsed and checked (missing: no quotas)."""
    from aiswitch.agents import load_yaml

    path = quotas_path(home)
    raw = load_yaml(path)
    if raw is None:
        return Quotas({}, {})
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping with agents: and presets:")
    version = raw.get("version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ConfigError(f"{path}: format version {version!r} is newer than this aiswitch reads")
    quotas = Quotas({}, {})
    for kind, key in KINDS.items():
        section = raw.get(key) or {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"{path}: {key}: expected a mapping")
        for name, limits in section.items():
            quotas.of(kind)[str(name)] = _limits(limits, f"{path}: {kind} {name!r}")  # type: ignore[arg-type]
    return quotas


def _write(home: Home, change: Callable[[Quotas], None]) -> Quotas:
    import yaml

    from aiswitch.state.store import StateStore

    store = StateStore(home)
    with store.lock(LOCK_RESOURCE):
        quotas = load_quotas(home)
        change(quotas)
        text = "# aiswitch quotas: change them with `aiswitch tokens quota …`.\n" + yaml.safe_dump(
            quotas.as_dict(), sort_keys=False, default_flow_style=False
        )
        store.write_bytes(quotas_path(home), text.encode("utf-8"))
    return quotas


def check_target(home: Home, kind: Kind, name: str) -> None:
    """Raise the registry's error when no agent or preset is called `name`."""
    if kind == "agent":
        from aiswitch.agents import AgentRegistry

        AgentRegistry.load(home).get(name)
    else:
        from aiswitch.presets.store import PresetStore

        PresetStore(home).get(name)


def set_quota(home: Home, kind: Kind, name: str, limits: Limits) -> Limits:
    """Merge `limits` into `name`'s; returns the limits now in force for it."""
    if limits.empty():
        raise UsageError(
            "give at least one limit",
            hint="--daily-tokens, --daily-usd, --monthly-tokens or --monthly-usd",
        )
    for field_name, value in limits.as_dict().items():
        if value <= 0:
            flag = "--" + field_name.replace("_", "-")
            raise UsageError(f"{flag} must be a positive number")
    check_target(home, kind, name)
    result: dict[str, Limits] = {}

    def change(quotas: Quotas) -> None:
        table = quotas.of(kind)
        table[name] = table.get(name, Limits()).merged(limits)
        result["now"] = table[name]

    _write(home, change)
    return result["now"]


def clear_quota(home: Home, kind: Kind | None, name: str | None) -> int:
    """Remove `name`'s limits (kind and name), or every quota (both None); how many went."""
    removed: list[int] = [0]

    def change(quotas: Quotas) -> None:
        if kind is None:
            removed[0] = len(quotas.agents) + len(quotas.presets)
            quotas.agents.clear()
            quotas.presets.clear()
        elif name is not None and quotas.of(kind).pop(name, None) is not None:
            removed[0] = 1

    _write(home, change)
    return removed[0]


@dataclass(frozen=True)
class Spent:
    """Usage of one agent or preset today and this month."""

    daily_tokens: int = 0
    daily_usd: float = 0.0
    monthly_tokens: int = 0
    monthly_usd: float = 0.0


def usage_by_target(
    home: Home, timezone: str | None = None, today: date | None = None
) -> dict[tuple[Kind, str], Spent]:
    """Today's and this month's usage of every agent and preset in the ledger."""
    from aiswitch.tokens.report_options import load_timezone, parse_report_options
    from aiswitch.tokens.sources import preset_settings, report_for_source

    zone = load_timezone(timezone)
    day = today or datetime.now(zone).date()
    month_start = day.replace(day=1)
    from aiswitch.tokens.prices import load_price_table

    presets = preset_settings(home)
    options = parse_report_options(
        by="day,agent,preset",
        since=month_start,
        until=day,
        timezone=timezone,
        prices=load_price_table(home),
        preset_prices=presets.prices,
        subscription_presets=presets.subscription,
    )
    report = report_for_source("aiswitch", home, options)
    sums: dict[tuple[Kind, str], list[float]] = {}
    today_text = day.isoformat()
    for row in report.rows:
        tokens = int(row["total_tokens"])
        cost = float(row["cost_usd"] or 0.0)
        is_today = row["day"] == today_text
        for kind, name in (("agent", row["agent"]), ("preset", row["preset"])):
            if not name:
                continue
            acc = sums.setdefault((kind, name), [0, 0.0, 0, 0.0])  # type: ignore[arg-type]
            acc[2] += tokens
            acc[3] += cost
            if is_today:
                acc[0] += tokens
                acc[1] += cost
    return {
        key: Spent(int(acc[0]), float(acc[1]), int(acc[2]), float(acc[3]))
        for key, acc in sums.items()
    }


_PERIOD = {
    "daily_tokens": ("daily token", "today"),
    "daily_usd": ("daily USD", "today"),
    "monthly_tokens": ("monthly token", "this month"),
    "monthly_usd": ("monthly USD", "this month"),
}


def exceeded(kind: Kind, name: str, limits: Limits, spent: Spent) -> str | None:
    """The one-line reason `name` may not start a task, or None when it may."""
    for field_name, limit in limits.as_dict().items():
        used = getattr(spent, field_name)
        if used < limit:
            continue
        what, when = _PERIOD[field_name]
        if field_name.endswith("_usd"):
            amounts = f"{format_usd(used)} of {format_usd(limit)} spent {when}"
        else:
            amounts = f"{used:,} of {limit:,} tokens used {when}"
        flag = "--" + field_name.replace("_", "-")
        return (
            f"{kind} {name!r} is over its {what} quota: {amounts} "
            f"(raise it with `aiswitch tokens quota set --{kind} {name} {flag} N` "
            f"or remove it with `aiswitch tokens quota clear --{kind} {name}`)"
        )
    return None


def quota_status(home: Home, timezone: str | None = None) -> list[dict[str, Any]]:
    """Every quota with its limits, today's and this month's use, and whether it is over
    (what `tokens quota show --json` prints, as `{"quotas": [...]}`)."""
    quotas = load_quotas(home)
    spent = usage_by_target(home, timezone) if (quotas.agents or quotas.presets) else {}
    entries: list[dict[str, Any]] = []
    targets: list[tuple[Kind, dict[str, Limits]]] = [
        ("agent", quotas.agents),
        ("preset", quotas.presets),
    ]
    for kind, table in targets:
        for name, limits in sorted(table.items()):
            used = spent.get((kind, name), Spent())
            entries.append(
                {
                    "kind": kind,
                    "name": name,
                    "limits": limits.as_dict(),
                    "used": {
                        "daily_tokens": used.daily_tokens,
                        "daily_usd": round(used.daily_usd, 6),
                        "monthly_tokens": used.monthly_tokens,
                        "monthly_usd": round(used.monthly_usd, 6),
                    },
                    "exceeded": exceeded(kind, name, limits, used) is not None,
                }
            )
    return entries


def make_quota_check(home: Home, timezone: str | None = None) -> QuotaCheck:
    """The check `aiswitch run` calls before each task: `check(agent, preset)`.

    Quotas are read once, here; usage is computed on the first check that has a quota to
    test (never when there are no quotas), and reused for the run's other tasks."""
    quotas = load_quotas(home)
    spent: dict[tuple[Kind, str], Spent] | None = None

    def check(agent: str, preset: str | None) -> None:
        nonlocal spent
        targets: list[tuple[Kind, str, Limits]] = []
        if agent in quotas.agents:
            targets.append(("agent", agent, quotas.agents[agent]))
        if preset is not None and preset in quotas.presets:
            targets.append(("preset", preset, quotas.presets[preset]))
        if not targets:
            return
        if spent is None:
            spent = usage_by_target(home, timezone)
        for kind, name, limits in targets:
            reason = exceeded(kind, name, limits, spent.get((kind, name), Spent()))
            if reason is not None:
                raise QuotaExceededError(reason)

    return check
