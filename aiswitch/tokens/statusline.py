"""`aiswitch tokens statusline`: one line for Claude Code's status bar, fast enough to run on
every refresh.

Contract:

- `statusline(stdin_text, home, now)` reads Claude Code's status-line JSON (`session_id`,
  `model.display_name`; anything else is ignored, and text that is not JSON is treated as
  `{}`) and returns one line:
  `🤖 Opus | 💰 $0.23 session / $1.23 today / $0.45 block (2h 45m left) | 🔥 $0.12/hr`:
  the cost of this session, of today (the local date) and of the active 5-hour block in
  Claude Code's logs, and the block's burn rate. Without an active block the block part reads
  `no active block` and there is no burn rate; a session the logs do not hold yet costs $0.
  Costs are the `auto` mode's over Claude's logs (`--source claude`), amounts as
  `aiswitch.tokens.money.format_usd` writes them.
- Speed: the figures come from a summary (`tmp/token-index/statusline.marshal`: cost per session,
  per local day and the last block) recorded with the snapshot of its inputs that
  `aiswitch.tokens.fastpath.snapshot("claude", home)` takes (every Claude log's size, mtime and
  inode, the home's config, aiswitch's code and prices) and the local zone. While that
  snapshot is unchanged, a run reads only the summary: no typer, pydantic or log parsing (see
  docs/performance.md for the time). Anything else (no summary, a changed file, another zone)
  rebuilds it through the normal readers (`load_claude_entries`, the row index, `build_blocks`). The
  summary is only a cache: an unreadable one is rebuilt, one that cannot be written is skipped.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import datetime

from aiswitch.home import Home
from aiswitch.tokens.money import format_usd

# Not `typing` at run time: it imports `re` (~5 ms), which this fast path otherwise never
# loads; mypy reads the names as if typing.TYPE_CHECKING were used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SUMMARY_VERSION = 3
# marshal, not JSON: the summary holds the snapshot (a fingerprint per log file), and marshal
# loads it several times faster (the file is only a cache, rebuilt when it does not load).
SUMMARY_FILE = ("token-index", "statusline.marshal")
SOURCE = "claude"
SESSION_S = 5 * 3600  # Claude's window (aiswitch.tokens.blocks.SESSION_HOURS)


def _zone() -> list[Any]:
    local = time.localtime()
    return [local.tm_zone, local.tm_gmtoff, os.environ.get("TZ")]


def _summary_path(home: Home) -> Any:
    return home.tmp.joinpath(*SUMMARY_FILE)


def _state_key(state: list[Any]) -> bytes:
    """The snapshot as bytes compared in one step (marshal version 2 writes no references,
    so equal snapshots give equal bytes)."""
    import marshal

    return marshal.dumps(state, 2)


def _load(home: Home, state: bytes) -> dict[str, Any] | None:
    import marshal

    try:
        summary = marshal.loads(_summary_path(home).read_bytes())  # noqa: S302 (own cache)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if not isinstance(summary, dict) or summary.get("v") != SUMMARY_VERSION:
        return None
    if summary.get("state") != state or summary.get("zone") != _zone():
        return None
    return summary


def build_summary(home: Home, now: datetime) -> dict[str, Any]:
    """Cost per session, per local day and the last block of Claude's logs (the slow path)."""
    from aiswitch.tokens.blocks import EntryPricer, build_blocks
    from aiswitch.tokens.prices import load_price_table
    from aiswitch.tokens.sources import load_claude_entries

    entries = load_claude_entries(home).rows
    table = load_price_table(home)
    entry_cost = EntryPricer(table).cost
    sessions: dict[str, float] = {}
    days: dict[str, float] = {}
    for entry in entries:
        cost = entry_cost(entry) or 0.0
        session = entry[1]  # ClaudeEntry.session_id
        if session:
            sessions[session] = sessions.get(session, 0.0) + cost
        day = time.strftime("%Y-%m-%d", time.localtime(entry[0] / 1000))  # .ts_ms
        days[day] = days.get(day, 0.0) + cost
    block = None
    finished = [b for b in build_blocks(entries, table, now) if not b["isGap"]]
    if finished:
        last = finished[-1]
        block = {
            "start": datetime.fromisoformat(last["startTime"]).timestamp(),
            "end": datetime.fromisoformat(last["endTime"]).timestamp(),
            "last": datetime.fromisoformat(last["actualEndTime"]).timestamp(),
            "first": last["first_entry_ms"] / 1000,
            "cost": last["costUSD"],
        }
    return {"sessions": sessions, "days": days, "block": block}


def _save(home: Home, summary: dict[str, Any]) -> None:
    import marshal

    from aiswitch.tokens.index import _atomic_write

    with contextlib.suppress(OSError, TypeError, ValueError):
        _atomic_write(_summary_path(home), marshal.dumps(summary))


def summary_for(home: Home, now: datetime) -> dict[str, Any]:
    """The recorded summary if its inputs are unchanged, else a new one (recorded)."""
    from aiswitch.tokens.fastpath import snapshot

    state = _state_key(snapshot(SOURCE, home))
    summary = _load(home, state)
    if summary is None:
        summary = build_summary(home, now)
        summary.update(v=SUMMARY_VERSION, state=state, zone=_zone())
        _save(home, summary)
    return summary


def _left(seconds: float) -> str:
    minutes = max(0, int(seconds // 60))
    return f"{minutes // 60}h {minutes % 60}m left"


def statusline(stdin_text: str, home: Home, now: datetime | None = None) -> str:
    """The status line for Claude Code's JSON `stdin_text` (see the module docstring)."""
    import json

    moment = now or datetime.now().astimezone()
    try:
        hook = json.loads(stdin_text) if stdin_text.strip() else {}
    except ValueError:
        hook = {}
    if not isinstance(hook, dict):
        hook = {}
    model = hook.get("model")
    name = model.get("display_name") or model.get("id") if isinstance(model, dict) else None
    session_id = hook.get("session_id")
    summary = summary_for(home, moment)
    session = summary["sessions"].get(session_id, 0.0) if isinstance(session_id, str) else 0.0
    today = summary["days"].get(moment.strftime("%Y-%m-%d"), 0.0)
    parts = [f"{format_usd(session)} session", f"{format_usd(today)} today"]
    burn = ""
    block = summary["block"]
    stamp = moment.timestamp()
    if block and stamp - block["last"] < SESSION_S and stamp < block["end"]:
        parts.append(f"{format_usd(block['cost'])} block ({_left(block['end'] - stamp)})")
        minutes = (block["last"] - block["first"]) / 60
        if minutes > 0:
            burn = f" | 🔥 {format_usd(block['cost'] / minutes * 60)}/hr"
    else:
        parts.append("no active block")
    head = f"🤖 {name} | " if isinstance(name, str) and name else ""
    return f"{head}💰 {' / '.join(parts)}{burn}"
