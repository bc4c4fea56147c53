"""`aiswitch tokens …`: usage reports, quotas, and moving the ledger between machines.

The commands parse and print; the work is in `aiswitch.tokens` (report, sources, quotas,
transfer). Warnings (malformed lines skipped, presets not read) go to stderr, one line
each, and never change the exit code; errors are `AiswitchError`s (one line, exit code).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

tokens_app = typer.Typer(
    help="Token usage: reports (ledger and CLI logs), quotas, export/import/prune.",
    no_args_is_help=True,
)
quota_app = typer.Typer(help="Daily and monthly limits per agent or preset.", no_args_is_help=True)
tokens_app.add_typer(quota_app, name="quota")

# The mark put before a cost that is only an API equivalent (subscription presets).
API_EQUIVALENT_MARK = "≈"
SOURCE_HELP = "aiswitch (the ledger), claude, codex, gemini, or all."


def _warning_text(lines: list[str]) -> str:
    return "".join(f"aiswitch: warning: {line}\n" for line in lines)


def _warn(lines: list[str]) -> None:
    sys.stderr.write(_warning_text(lines))


def _split(values: list[str] | None) -> tuple[str, ...]:
    """Repeated options and comma-separated lists, both: --agent a,b --agent c."""
    out: list[str] = []
    for value in values or []:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return tuple(out)


def _report(
    by: str,
    since: str | None,
    until: str | None,
    agent: list[str] | None,
    preset: list[str] | None,
    model: list[str] | None,
    run: list[str] | None,
    timezone: str | None,
    source: str,
    cost_mode: str,
    as_json: bool,
    as_csv: bool,
    no_cache: bool,
    fmt: str = "aiswitch",
    verbose: bool = False,
) -> None:
    from aiswitch.errors import UsageError
    from aiswitch.home import Home
    from aiswitch.tokens import fastpath
    from aiswitch.tokens.ccusage_format import check_format
    from aiswitch.tokens.sources import check_source

    if as_json and as_csv:
        raise UsageError("give --json or --csv, not both")
    check_source(source)
    check_format(fmt, by, as_json)
    home = Home.current()
    # The command line to record for the CLI's fast path, and the inputs as they are now
    # (taken before reading them, the presets or the prices: a file changed meanwhile makes
    # the record miss).
    args = fastpath.current_args if as_json and not no_cache and not verbose else None
    state = None
    if args is not None and fastpath.enabled() and fastpath.eligible(args):
        state = fastpath.snapshot(source, home)
    if verbose:
        _say_what_is_read(source, home)
    inputs = state[1] if state is not None else None  # listed and stat-ed once
    report, warning_list = make_report(
        home,
        by if fmt == "aiswitch" else f"{by},model",
        since,
        until,
        agent,
        preset,
        model,
        run,
        timezone,
        source,
        cost_mode,
        use_cache=not no_cache,
        inputs=inputs,
    )
    warnings = _warning_text(warning_list)
    sys.stderr.write(warnings)
    if as_json:
        text = (
            report.to_json() + "\n"
            if fmt == "aiswitch"
            else _ccusage_text(report, by, home, source)
        )
        sys.stdout.write(text)
        if args is not None and state is not None:
            fastpath.remember(args, home, state, text, warnings)
    elif as_csv:
        sys.stdout.write(report.to_csv())
    else:
        _print_table(report)


def make_report(
    home: Any,
    by: str,
    since: str | None,
    until: str | None,
    agent: list[str] | None,
    preset: list[str] | None,
    model: list[str] | None,
    run: list[str] | None,
    timezone: str | None,
    source: str,
    cost_mode: str,
    *,
    use_cache: bool = True,
    inputs: Any = None,
) -> tuple[Any, list[str]]:
    """The report `tokens report` shows (and the MCP `tokens_report` tool returns), with
    its warnings."""
    from aiswitch.tokens.prices import load_price_table
    from aiswitch.tokens.report_options import parse_report_options
    from aiswitch.tokens.sources import check_source, preset_settings, report_for_source

    check_source(source)
    presets = preset_settings(home)
    options = parse_report_options(
        by=by,
        since=since,
        until=until,
        agents=_split(agent),
        presets=_split(preset),
        models=_split(model),
        runs=_split(run),
        timezone=timezone,
        cost_mode=cost_mode,
        prices=load_price_table(home),
        preset_prices=presets.prices,
        subscription_presets=presets.subscription,
    )
    report = report_for_source(source, home, options, use_cache=use_cache, fingerprints=inputs)
    return report, presets.warnings + report.warnings


def _ccusage_text(report: Any, by: str, home: Any, source: str) -> str:
    """`--format ccusage`: the report in ccusage's JSON shape (aiswitch.tokens.ccusage_format)."""
    import json

    from aiswitch.tokens.ccusage_format import ccusage_document, session_infos

    sessions = None
    if by == "session":
        from aiswitch.tokens.sources import input_files, load_rows
        from aiswitch.tokens.sources.claude import session_from_path

        projects: dict[str, str] = {}
        if source in ("claude", "all"):
            for path in input_files("claude", home):
                parts = path.parts
                if "projects" in parts:
                    after = len(parts) - parts[::-1].index("projects")
                    if after < len(parts) - 1:
                        projects.setdefault(session_from_path(path), parts[after])
        sessions = session_infos(load_rows(source, home).rows, projects)
    return json.dumps(ccusage_document(report, by, sessions), indent=2, sort_keys=True) + "\n"


def _say_what_is_read(source: str, home: Any) -> None:
    """`-v`: one stderr line per folder of CLI logs the report reads (the user's own CLI
    homes and aiswitch's preset homes), and the ledger."""
    from aiswitch.tokens.inputs import log_roots

    lines = []
    if source in ("aiswitch", "all"):
        lines.append(f"aiswitch: reading the ledger {home.ledger}")
    for cli in ("claude", "codex", "gemini"):
        if source in (cli, "all"):
            roots = log_roots(cli, home=home)
            where = ", ".join(str(path) for path in roots) if roots else "none found"
            lines.append(f"aiswitch: reading {cli} logs in {where}")
    sys.stderr.write("".join(line + "\n" for line in lines))


def _money(value: float | None, unpriced: int, api_equivalent: float) -> str:
    if value is None:
        return "unpriced"
    from aiswitch.tokens.money import format_usd

    text = format_usd(value)
    if api_equivalent > 0:
        text = API_EQUIVALENT_MARK + text
    if unpriced:
        text += f" (+{unpriced} unpriced)"
    return text


# Wide enough for every column of `--by day,agent,preset,model` with full values.
PIPED_TABLE_WIDTH = 240


def _print_table(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        # Piped or redirected: no terminal to fit, so never cut a column to a guessed 80.
        console = Console(width=PIPED_TABLE_WIDTH)
    if not report.rows:
        console.print("No usage recorded for this selection.", highlight=False)
        return
    titles = {"run": "Run", "session": "Session", "provider": "Provider"}
    table = Table(show_footer=True, footer_style="bold", highlight=False)
    counters = (
        ("input_tokens", "Input"),
        ("output_tokens", "Output"),
        ("cache_read_tokens", "Cache rd"),
        ("cache_write_tokens", "Cache wr"),
        ("reasoning_tokens", "Reason"),
        ("total_tokens", "Total"),
    )
    totals = report.totals
    for index, key in enumerate(report.by):
        table.add_column(titles.get(key, key.capitalize()), footer="Total" if index == 0 else "")
    for key, title in counters:
        table.add_column(title, justify="right", footer=f"{totals[key]:,}")
    table.add_column(
        "USD",
        justify="right",
        footer=_money(totals["cost_usd"], totals["unpriced_requests"], report.api_equivalent_usd),
    )
    table.add_column("Requests", justify="right", footer=f"{totals['requests']:,}")
    for row in report.rows:
        table.add_row(
            *(str(row[key]) if row[key] is not None else "-" for key in report.by),
            *(f"{row[key]:,}" for key, _ in counters),
            _money(row["cost_usd"], row["unpriced_requests"], row.get("api_equivalent_usd", 0)),
            f"{row['requests']:,}",
        )
    console.print(table)
    from aiswitch.tokens.money import format_usd

    notes = [f"Times in {report.timezone}; prices as of {report.prices_as_of or 'unknown'}."]
    if report.api_equivalent_usd > 0:
        notes.append(
            f"{API_EQUIVALENT_MARK} includes {format_usd(report.api_equivalent_usd)} of "
            "API-equivalent cost: usage of subscription presets, not billed per token."
        )
    if totals["unpriced_requests"]:
        notes.append("Unpriced: models without a known price (never counted as $0).")
    for note in notes:
        console.print(note, style="dim", highlight=False)


# Options shared by `report` and its shortcuts (typer reads defaults from these).
_SINCE = typer.Option(None, "--since", help="First day (YYYY-MM-DD or YYYYMMDD), inclusive.")
_UNTIL = typer.Option(None, "--until", help="Last day, inclusive.")
_AGENT = typer.Option(None, "--agent", help="Only these agents (repeat or comma-separate).")
_PRESET = typer.Option(None, "--preset", help="Only these presets.")
_MODEL = typer.Option(None, "--model", help="Only these models (dated ids match too).")
_RUN = typer.Option(None, "--run", help="Only these run ids.")
_TZ = typer.Option(None, "--timezone", help="IANA zone for days and dates (default: local).")
_SOURCE = typer.Option("aiswitch", "--source", help=SOURCE_HELP)
_COST = typer.Option("auto", "--cost-mode", help="auto, calculate or reported.")
_JSON = typer.Option(False, "--json", help="One JSON document (docs/tokens.md).")
_CSV = typer.Option(False, "--csv", help="CSV with a TOTAL line.")
_NO_CACHE = typer.Option(False, "--no-cache", help="Read everything again; skip the caches.")
_FORMAT = typer.Option(
    "aiswitch",
    "--format",
    help="JSON shape: aiswitch (report schema 1) or ccusage (ccusage's daily, monthly or "
    "session --json; with --by day, month or session).",
)
_VERBOSE = typer.Option(
    False, "--verbose", "-v", help="Say which ledger and CLI homes are read (on stderr)."
)


@tokens_app.command("report")
def report_cmd(
    by: str = typer.Option(
        "day",
        "--by",
        help="day, week, month, agent, preset, model, provider, run, session, host, branch, "
        "caller; "
        "several: --by day,agent.",
    ),
    since: str | None = _SINCE,
    until: str | None = _UNTIL,
    agent: list[str] | None = _AGENT,
    preset: list[str] | None = _PRESET,
    model: list[str] | None = _MODEL,
    run: list[str] | None = _RUN,
    timezone: str | None = _TZ,
    source: str = _SOURCE,
    cost_mode: str = _COST,
    as_json: bool = _JSON,
    as_csv: bool = _CSV,
    no_cache: bool = _NO_CACHE,
    fmt: str = _FORMAT,
    verbose: bool = _VERBOSE,
) -> None:
    """Token usage and cost, grouped as --by says, with totals."""
    _report(by, since, until, agent, preset, model, run, timezone, source, cost_mode, as_json,
            as_csv, no_cache, fmt, verbose)  # fmt: skip


def _shortcut(name: str, by: str, what: str) -> None:
    def command(
        since: str | None = _SINCE,
        until: str | None = _UNTIL,
        agent: list[str] | None = _AGENT,
        preset: list[str] | None = _PRESET,
        model: list[str] | None = _MODEL,
        run: list[str] | None = _RUN,
        timezone: str | None = _TZ,
        source: str = _SOURCE,
        cost_mode: str = _COST,
        as_json: bool = _JSON,
        as_csv: bool = _CSV,
        no_cache: bool = _NO_CACHE,
        fmt: str = _FORMAT,
        verbose: bool = _VERBOSE,
    ) -> None:
        _report(by, since, until, agent, preset, model, run, timezone, source, cost_mode,
                as_json, as_csv, no_cache, fmt, verbose)  # fmt: skip

    command.__doc__ = f"{what} (ccusage's `{name}`): `tokens report --by {by}`."
    tokens_app.command(name)(command)


_shortcut("daily", "day", "Usage per day")
_shortcut("weekly", "week", "Usage per ISO week")
_shortcut("monthly", "month", "Usage per month")
_shortcut("session", "session", "Usage per session")


# --- quotas -------------------------------------------------------------------------------


def _target(agent: str | None, preset: str | None) -> tuple[Any, str]:
    from aiswitch.errors import UsageError

    if agent is not None and preset is None:
        return "agent", agent
    if preset is not None and agent is None:
        return "preset", preset
    raise UsageError("give exactly one of --agent or --preset")


def _audit(action: str, **details: Any) -> None:
    from aiswitch.state.audit import audit

    audit(action, **details)


@quota_app.command("set")
def quota_set(
    agent: str | None = typer.Option(None, "--agent", help="The agent the limits apply to."),
    preset: str | None = typer.Option(None, "--preset", help="The preset they apply to."),
    daily_tokens: int | None = typer.Option(None, "--daily-tokens", help="Tokens per day."),
    daily_usd: float | None = typer.Option(None, "--daily-usd", help="USD per day."),
    monthly_tokens: int | None = typer.Option(None, "--monthly-tokens", help="Tokens a month."),
    monthly_usd: float | None = typer.Option(None, "--monthly-usd", help="USD a month."),
) -> None:
    """Set limits (others already set are kept); `run` refuses tasks over them (exit 6)."""
    from aiswitch.home import Home
    from aiswitch.tokens.quotas import Limits, set_quota

    kind, name = _target(agent, preset)
    limits = Limits(daily_tokens, daily_usd, monthly_tokens, monthly_usd)
    now = set_quota(Home.current(), kind, name, limits)
    _audit("quota.set", kind=kind, name=name, limits=now.as_dict())
    shown = ", ".join(f"{key}={value:g}" for key, value in now.as_dict().items())
    sys.stdout.write(f"quota for {kind} {name}: {shown}\n")


@quota_app.command("show")
def quota_show(
    as_json: bool = typer.Option(False, "--json", help="Limits and today's/this month's use."),
    timezone: str | None = _TZ,
) -> None:
    """Every quota, with what was used today and this month."""
    import json

    from aiswitch.home import Home
    from aiswitch.tokens.money import format_usd
    from aiswitch.tokens.quotas import quota_status

    entries = quota_status(Home.current(), timezone)
    if as_json:
        sys.stdout.write(json.dumps({"quotas": entries}, indent=2) + "\n")
        return
    if not entries:
        sys.stdout.write("no quotas (set one with `aiswitch tokens quota set`)\n")
        return
    for entry in entries:
        parts = []
        for key, limit in entry["limits"].items():
            used_value = entry["used"][key]
            if key.endswith("_usd"):
                parts.append(f"{key} {format_usd(used_value)} / {format_usd(limit)}")
            else:
                parts.append(f"{key} {used_value:,} / {limit:,}")
        flag = "  OVER" if entry["exceeded"] else ""
        sys.stdout.write(f"{entry['kind']} {entry['name']}: {'; '.join(parts)}{flag}\n")


@quota_app.command("clear")
def quota_clear(
    agent: str | None = typer.Option(None, "--agent", help="Clear this agent's limits."),
    preset: str | None = typer.Option(None, "--preset", help="Clear this preset's limits."),
    clear_all: bool = typer.Option(False, "--all", help="Clear every quota."),
) -> None:
    """Remove one agent's or preset's limits, or all of them."""
    from aiswitch.errors import UsageError
    from aiswitch.home import Home
    from aiswitch.tokens.quotas import clear_quota

    home = Home.current()
    if clear_all:
        if agent or preset:
            raise UsageError("--all clears everything: give it alone")
        removed = clear_quota(home, None, None)
        _audit("quota.clear", all=True, removed=removed)
        sys.stdout.write(f"cleared {removed} quota(s)\n")
        return
    if agent is None and preset is None:
        raise UsageError("give --agent, --preset or --all")
    kind, name = _target(agent, preset)
    if not clear_quota(home, kind, name):
        raise UsageError(f"{kind} {name!r} has no quota", hint="`aiswitch tokens quota show`")
    _audit("quota.clear", kind=kind, name=name)
    sys.stdout.write(f"cleared the quota of {kind} {name}\n")


# --- moving data --------------------------------------------------------------------------


@tokens_app.command("export")
def export_cmd(
    fmt: str = typer.Option("jsonl", "--format", help="jsonl (importable) or csv."),
    output: Path | None = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
    since: str | None = _SINCE,
    until: str | None = _UNTIL,
    agent: list[str] | None = _AGENT,
    preset: list[str] | None = _PRESET,
    model: list[str] | None = _MODEL,
    run: list[str] | None = _RUN,
    timezone: str | None = _TZ,
) -> None:
    """Write the ledger's records (filtered) as JSON lines or CSV."""
    from aiswitch.errors import UsageError
    from aiswitch.home import Home
    from aiswitch.tokens.report_options import load_timezone, parse_date
    from aiswitch.tokens.transfer import (
        EXPORT_FORMATS,
        RecordFilter,
        export_records,
        write_export,
    )

    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown --format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    load_timezone(timezone)
    where = RecordFilter(
        since=parse_date(since, "--since"),
        until=parse_date(until, "--until"),
        agents=_split(agent),
        presets=_split(preset),
        models=_split(model),
        runs=_split(run),
        timezone=timezone,
    )
    home = Home.current()
    result = export_records(home, where)
    if result.malformed:
        _warn([f"skipped {result.malformed} malformed line(s) in {home.ledger}"])
    if output is None:
        write_export(result.records, fmt, sys.stdout)
        return
    import os
    import tempfile

    # Temp file + rename: an interrupted export never leaves half a file under the name.
    output = output.expanduser()
    fd, tmp = tempfile.mkstemp(dir=output.parent or Path("."), prefix=f".{output.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            count = write_export(result.records, fmt, handle)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sys.stderr.write(f"aiswitch: exported {count} record(s) to {output}\n")


@tokens_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help="A ledger export (JSON lines or CSV)."),
) -> None:
    """Merge another machine's ledger; records already here are not added again."""
    from aiswitch.home import Home
    from aiswitch.tokens.transfer import import_file

    result = import_file(Home.current(), file)
    _audit(
        "tokens.import",
        source=str(file),
        added=result.added,
        duplicates=result.duplicates,
        before_cutoff=result.before_cutoff,
    )
    line = (
        f"imported {result.added} record(s) from {file}; "
        f"{result.duplicates} already present, skipped"
    )
    if result.before_cutoff:
        line += f"; {result.before_cutoff} older than the last prune ({result.cutoff}), skipped"
    sys.stdout.write(line + "\n")


@tokens_app.command("prune")
def prune_cmd(
    before: str = typer.Option(..., "--before", help="Roll up records of days before DATE."),
    timezone: str | None = _TZ,
) -> None:
    """Move old records into a rollup that reports keep counting (totals do not change)."""
    from aiswitch.home import Home
    from aiswitch.tokens.report_options import load_timezone, parse_date
    from aiswitch.tokens.sources import preset_settings
    from aiswitch.tokens.transfer import prune

    day = parse_date(before, "--before")
    assert day is not None
    load_timezone(timezone)
    home = Home.current()
    presets = preset_settings(home)
    _warn(presets.warnings)
    result = prune(home, day, timezone, presets.prices)
    text = (
        f"pruned {result.pruned} record(s) before {day} into {result.entries} rollup "
        f"entr{'y' if result.entries == 1 else 'ies'}; kept {result.kept}"
    )
    if result.malformed_kept:
        text += f" and {result.malformed_kept} malformed line(s)"
    if result.duplicates_dropped:
        text += f"; dropped {result.duplicates_dropped} duplicate(s) of pruned records"
    sys.stdout.write(text + "\n")


def register(app: typer.Typer) -> None:
    from aiswitch.cli import tokens_blocks_cmd  # noqa: F401 (adds `blocks` and `statusline`)

    app.add_typer(tokens_app, name="tokens")
