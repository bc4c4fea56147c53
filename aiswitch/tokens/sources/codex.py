"""Codex's own logs: `sessions/**/rollout-*.jsonl` under `$CODEX_HOME` (default `~/.codex`).

Contract: `codex_files(env)` lists the rollout files; `parse_codex_bytes(data, session)` turns
one whole file into report `Row`s (source "codex", agent "codex") and a count of malformed
lines. A file is parsed whole because each event depends on the ones before it.

Codex writes `event_msg` lines of type `token_count` whose `info.total_token_usage` is the
session's running total and `info.last_token_usage` the last request's usage. As ccusage does:
when the running total moved, the request's usage is `last_token_usage` (or, without it, the
difference of the totals); a repeated total (Codex re-emits it) adds nothing; events whose
usage is all zero are dropped. A running total that goes down (a reset, e.g. after compaction)
starts a new baseline rather than producing negative counts. The model comes from the event,
else from the latest `turn_context`, else it is unknown (`None`, so unpriced: aiswitch never
guesses a model). The session id is `session_meta.payload.id`, else the file's path below
`sessions/` without `.jsonl`.

Ids (what `--source all` matches the ledger's records on): a request of a turn codex named
(`turn_context` or `task_started` carry `turn_id`) has `message_id` = the turn id and
`request_id` = `<turn id>:<n>`, n counting the turn's requests from 1. The codex adapter
records the same ids from the same rollout (adapters/codex.py), so a request aiswitch drove
counts once. Requests before any turn id have no ids (never matched, never deduplicated).

Counts are normalised (see `aiswitch.tokens.usage`): OpenAI counts cached tokens inside
`input_tokens`, so they move to `cache_read_tokens`; `reasoning_output_tokens` is part of
`output_tokens`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from aiswitch.tokens.inputs import codex_files as codex_files  # re-exported
from aiswitch.tokens.inputs import codex_home as codex_home  # re-exported
from aiswitch.tokens.inputs import codex_homes as codex_homes  # re-exported
from aiswitch.tokens.rows import Row
from aiswitch.tokens.sources.jsonl import json_objects

SOURCE = "codex"
_FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")


def session_from_path(path: Path, sessions_dir: Path) -> str:
    try:
        relative = path.relative_to(sessions_dir)
    except ValueError:
        relative = Path(path.name)
    return str(relative.with_suffix("")) or "unknown"


def _usage(value: object) -> tuple[int, int, int, int] | None:
    if not isinstance(value, dict):
        return None
    out: list[int] = []
    for name in _FIELDS:
        number = value.get(name, 0)
        if isinstance(number, bool) or not isinstance(number, int | float):
            number = 0
        out.append(max(int(number), 0))
    return out[0], out[1], out[2], out[3]


def parse_codex_bytes(data: bytes, path_session: str) -> tuple[list[Row], int]:
    rows: list[Row] = []
    objects, malformed = json_objects(data)
    session = path_session
    model: str | None = None
    turn: str | None = None
    turn_requests = 0
    previous: tuple[int, int, int, int] | None = None
    for obj in objects:
        kind = obj.get("type")
        payload = obj.get("payload")
        if not isinstance(payload, dict):
            continue
        if kind == "session_meta":
            meta_id = payload.get("id")
            if isinstance(meta_id, str) and meta_id:
                session = meta_id
            continue
        turn_id = payload.get("turn_id")
        if isinstance(turn_id, str) and turn_id and turn_id != turn:
            turn, turn_requests = turn_id, 0
        if kind == "turn_context":
            turn_model = payload.get("model")
            if isinstance(turn_model, str) and turn_model:
                model = turn_model
            continue
        if kind != "event_msg" or payload.get("type") != "token_count":
            continue
        info = payload.get("info")
        if not isinstance(info, dict):
            continue
        total = _usage(info.get("total_token_usage"))
        last = _usage(info.get("last_token_usage"))
        advanced = total is None or total != previous
        usage: tuple[int, int, int, int] | None
        if last is not None and advanced:
            usage = last
        elif total is not None:
            if previous is None or any(t < b for t, b in zip(total, previous, strict=True)):
                usage = total  # first event, or the running total was reset: all of it is new
            else:
                a, b, c, d = (t - p for t, p in zip(total, previous, strict=True))
                usage = (a, b, c, d)
        else:
            usage = None
        if total is not None:
            previous = total
        if usage is None or not any(usage):
            continue
        ts = _timestamp(obj.get("timestamp"))
        if ts is None:
            malformed += 1
            continue
        event_model = payload.get("model") or info.get("model")
        row_model = event_model if isinstance(event_model, str) and event_model else model
        inp, cached, out, reasoning = usage
        cached = min(cached, inp)
        request_id = None
        if turn is not None:
            turn_requests += 1
            request_id = f"{turn}:{turn_requests}"
        rows.append(
            (
                ts,
                SOURCE,
                "codex",
                None,
                None,
                row_model,
                None,
                session,
                turn if request_id else None,
                request_id,
                inp - cached,
                out,
                cached,
                0,
                min(reasoning, out),
                0,
                None,
                "unpriced",
                None,  # host: the logs name none
                None,  # branch
                None,  # caller
                1,  # requests: an entry of the log is one
            )
        )
    return rows, malformed


def _timestamp(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Epoch seconds, or milliseconds when implausibly large for seconds.
        return float(value) / 1000.0 if value > 1e11 else float(value)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.timestamp()
