"""`aiswitch tokens blocks` (Claude's 5-hour billing windows) and `aiswitch tokens statusline`
(one line for Claude Code's status bar).

The commands parse and print; the work is in `aiswitch.tokens.blocks` and
`aiswitch.tokens.statusline`. Registered on `tokens_app` when `tokens_cmd` registers.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from aiswitch.cli.tokens_cmd import _JSON, _NO_CACHE, _warn, tokens_app


@tokens_app.command("blocks")
def blocks_cmd(
    active: bool = typer.Option(False, "--active", help="Only the active block, projected."),
    recent: bool = typer.Option(False, "--recent", help="Blocks of the last 3 days (and active)."),
    token_limit: str | None = typer.Option(
        None, "--token-limit", help="Tokens per block to warn at: a number, or max (the most used)."
    ),
    as_json: bool = _JSON,
    no_cache: bool = _NO_CACHE,
) -> None:
    """Claude's 5-hour billing windows from Claude Code's logs (ccusage's `blocks`)."""
    import json
    from datetime import UTC, datetime

    from aiswitch.home import Home
    from aiswitch.tokens.blocks import ccusage_json, parse_token_limit, select_blocks
    from aiswitch.tokens.prices import load_price_table
    from aiswitch.tokens.sources import claude_hour_sums

    limit = parse_token_limit(token_limit)
    home = Home.current()
    sums, warnings = claude_hour_sums(home, load_price_table(home), use_index=not no_cache)
    _warn(warnings)
    now = datetime.now(UTC)
    blocks = sums.blocks(now)
    chosen = select_blocks(blocks, now, active=active, recent=recent, token_limit=limit)
    if as_json:
        sys.stdout.write(json.dumps(ccusage_json(chosen), indent=2) + "\n")
        return
    _print_blocks(chosen)


def _print_blocks(blocks: list[dict[str, Any]]) -> None:
    from datetime import datetime

    from rich.console import Console
    from rich.table import Table

    from aiswitch.tokens.money import format_usd

    console = Console()
    if not blocks:
        console.print("no Claude usage in these blocks", highlight=False)
        return
    table = Table(show_lines=False)
    for name in ("Block start", "Status", "Entries", "Tokens", "Cost", "Models"):
        table.add_column(name, justify="right" if name in ("Entries", "Tokens", "Cost") else "left")
    for block in blocks:
        start = datetime.fromisoformat(block["startTime"]).astimezone().strftime("%Y-%m-%d %H:%M")
        if block["isGap"]:
            table.add_row(start, "gap", "", "", "", "", style="dim")
            continue
        status = "ACTIVE" if block["isActive"] else ""
        cost = format_usd(block["costUSD"])
        if block["unpriced_entries"]:
            cost += f" (+{block['unpriced_entries']} unpriced)"
        table.add_row(
            start,
            status,
            f"{block['entries']:,}",
            f"{block['totalTokens']:,}",
            cost,
            ", ".join(block["models"]),
        )
    console.print(table)
    for block in blocks:
        if not block["isActive"] or not block["burnRate"]:
            continue
        burn, projection = block["burnRate"], block["projection"]
        line = (
            f"active block: {burn['tokensPerMinute']:,.0f} tokens/min, "
            f"{format_usd(burn['costPerHour'])}/hour; by its end "
            f"({projection['remainingMinutes']} min): {projection['totalTokens']:,} tokens, "
            f"{format_usd(projection['totalCost'])}"
        )
        limit = block.get("tokenLimitStatus")
        if limit:
            line += (
                f"; limit {limit['limit']:,} tokens: {limit['percentUsed']:.0f}% projected "
                f"({limit['status']})"
            )
        console.print(line, highlight=False)


@tokens_app.command("statusline")
def statusline_cmd() -> None:
    """One line for Claude Code's status bar, from its status-line JSON on stdin."""
    from aiswitch.cli.entry import run_statusline

    code = run_statusline()
    if code:
        raise typer.Exit(code)
