"""Gemini CLI's own chat logs: `tmp/<project-hash>/chats/session-*.json[l]`.

Contract: `gemini_files(env)` lists the chat files under `$GEMINI_DATA_DIR` (ccusage's variable)
else `~/.gemini`; `parse_gemini_bytes(data, path)` turns one whole file into report `Row`s
(source "gemini", agent "gemini") and a count of malformed lines or documents.

Gemini CLI 0.x records a chat as one JSON document (`session-<time>-<id>.json`:
`{sessionId, startTime, messages: [...]}`), newer builds as JSON lines (one record per line, a
message rewritten under the same `id` as it streams: the last version counts). A message of
`type: "gemini"` carries `tokens: {input, output, cached, thoughts, tool, total}` (aliases
`prompt`, `candidates` and the API's `…TokenCount` names are accepted) and `model`.

Normalised as `aiswitch.tokens.usage` defines: `input` (the prompt) includes cached tokens, so
they move to `cache_read_tokens`; tool-use prompt tokens are prompt tokens billed as input, so
they are added to `input_tokens`; output = candidates + thoughts, and thoughts are
`reasoning_tokens`. A message without a timestamp takes the session's start time.

Ids: a message's `id` is both its `message_id` and its `request_id` (one message is one API
request); the gemini adapter records the same from the same file (adapters/gemini.py), so
`--source all` counts a request aiswitch drove once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from aiswitch.tokens.inputs import gemini_files as gemini_files  # re-exported
from aiswitch.tokens.inputs import gemini_home as gemini_home  # re-exported
from aiswitch.tokens.rows import Row
from aiswitch.tokens.sources.jsonl import JSONError as _JSONError
from aiswitch.tokens.sources.jsonl import json_objects
from aiswitch.tokens.sources.jsonl import loads as _loads

SOURCE = "gemini"
_ALIASES = {
    "input": ("input", "prompt", "promptTokenCount", "input_tokens"),
    "output": ("output", "candidates", "candidatesTokenCount", "output_tokens"),
    "cached": ("cached", "cachedContentTokenCount", "cached_tokens"),
    "thoughts": ("thoughts", "thoughtsTokenCount", "thoughts_tokens"),
    "tool": ("tool", "toolUsePromptTokenCount", "tool_tokens"),
}


def parse_gemini_bytes(data: bytes, path: Path) -> tuple[list[Row], int]:
    if path.suffix == ".jsonl":
        return _parse_lines(data, path)
    try:
        doc = _loads(data)
    except _JSONError:
        return [], 1
    if not isinstance(doc, dict):
        return [], 1
    session = _session(doc, path)
    start = _timestamp(doc.get("startTime")) or _timestamp(doc.get("lastUpdated"))
    messages = doc.get("messages")
    if not isinstance(messages, list):
        return [], 0
    return _rows(messages, session, start), 0


def _parse_lines(data: bytes, path: Path) -> tuple[list[Row], int]:
    records, malformed = json_objects(data)
    session = path.stem
    start: float | None = None
    by_id: dict[str, int] = {}
    messages: list[dict[str, Any]] = []
    for record in records:
        if record.get("sessionId"):
            session = str(record["sessionId"])
        start = start or _timestamp(record.get("startTime"))
        if record.get("type") != "gemini":
            continue
        message_id = record.get("id")
        if isinstance(message_id, str) and message_id in by_id:
            messages[by_id[message_id]] = record
            continue
        if isinstance(message_id, str):
            by_id[message_id] = len(messages)
        messages.append(record)
    return _rows(messages, session, start), malformed


def _rows(messages: Iterable[object], session: str, start: float | None) -> list[Row]:
    rows: list[Row] = []
    for message in messages:
        if not isinstance(message, dict) or message.get("type") != "gemini":
            continue
        tokens = message.get("tokens")
        if not isinstance(tokens, dict):
            continue
        counts = {name: _count(tokens, aliases) for name, aliases in _ALIASES.items()}
        cached = min(counts["cached"], counts["input"])
        input_tokens = counts["input"] - cached + counts["tool"]
        output_tokens = counts["output"] + counts["thoughts"]
        if not (input_tokens or output_tokens or cached):
            continue
        ts = _timestamp(message.get("timestamp")) or start
        if ts is None:
            continue
        model = message.get("model")
        message_id = message.get("id")
        rows.append(
            (
                ts,
                SOURCE,
                "gemini",
                None,
                None,
                model if isinstance(model, str) and model else None,
                None,
                session,
                message_id if isinstance(message_id, str) else None,
                message_id if isinstance(message_id, str) else None,
                input_tokens,
                output_tokens,
                cached,
                0,
                counts["thoughts"],
                0,
                None,
                "unpriced",
                None,  # host: the logs name none
                None,  # branch
                None,  # caller
                1,  # requests: an entry of the log is one
            )
        )
    return rows


def _session(doc: dict[str, Any], path: Path) -> str:
    value = doc.get("sessionId") or doc.get("session_id")
    return str(value) if value else path.stem


def _count(tokens: dict[str, Any], aliases: tuple[str, ...]) -> int:
    for name in aliases:
        value = tokens.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return max(int(value), 0)
    return 0


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None
