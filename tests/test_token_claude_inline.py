"""The inlined per-line checks of `parse_claude_bytes` agree with the general `_entries_of`."""

from __future__ import annotations

import json
from typing import Any

from aiswitch.tokens.sources import claude

BASE: dict[str, Any] = {
    "type": "assistant",
    "sessionId": "s1",
    "requestId": "r1",
    "version": "2.0.37",
    "isSidechain": False,
    "timestamp": "2026-03-23T19:32:26.487Z",
    "message": {
        "id": "m1",
        "model": "claude-sonnet-4-20250514",
        "usage": {
            "input_tokens": 5,
            "output_tokens": 7,
            "cache_read_input_tokens": 11,
            "cache_creation_input_tokens": 13,
        },
    },
}


def _variant(path: str, value: Any) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(json.dumps(BASE))
    target = obj
    *parents, last = path.split(".")
    for name in parents:
        target = target[name]
    if value is _DROP:
        target.pop(last, None)
    else:
        target[last] = value
    return obj


_DROP = object()
VARIANTS = [
    ("timestamp", "2026-03-23 19:32:26Z"),
    ("timestamp", "2026-03-23T19:32:26"),
    ("timestamp", "2026-03-23"),
    ("timestamp", "not a time"),
    ("timestamp", 5),
    ("sessionId", ""),
    ("sessionId", _DROP),
    ("sessionId", 3),
    ("requestId", ""),
    ("requestId", _DROP),
    ("version", "2.x"),
    ("version", _DROP),
    ("version", 2),
    ("isSidechain", True),
    ("isSidechain", 1),
    ("costUSD", 0.5),
    ("costUSD", 2),
    ("costUSD", True),
    ("costUSD", "1"),
    ("message.id", ""),
    ("message.id", _DROP),
    ("message.model", ""),
    ("message.model", 4),
    ("message.model", _DROP),
    ("message.usage.input_tokens", -1),
    ("message.usage.input_tokens", 1.0),
    ("message.usage.output_tokens", True),
    ("message.usage.cache_read_input_tokens", _DROP),
    ("message.usage.cache_creation_input_tokens", "3"),
    ("message.usage.speed", "fast"),
    ("message.usage.speed", "standard"),
    ("message.usage.speed", "slow"),
    ("message.usage.cache_creation", {"ephemeral_5m_input_tokens": 2}),
    ("message.usage.cache_creation", {"ephemeral_1h_input_tokens": -2}),
    ("message.usage.cache_creation", []),
    (
        "message.usage.iterations",
        [
            {
                "type": "advisor_message",
                "model": "claude-opus-4",
                "input_tokens": 1,
                "output_tokens": 2,
            }
        ],
    ),
    ("message", "text"),
    ("message.usage", [1]),
    # Counts past msgspec's int64 bound (orjson still reads them as ints up to 2**64 - 1).
    ("message.usage.input_tokens", 2**63),
    ("message.usage.output_tokens", 2**64 - 1),
    ("message.usage.cache_read_input_tokens", 2**64),
    ("message.usage.cache_creation", {"ephemeral_1h_input_tokens": 2**63 + 5}),
    ("message.usage.cache_creation", None),
    ("message.usage.cache_creation", {"ephemeral_5m_input_tokens": 1.5}),
    ("message.usage.speed", None),
    ("message.usage.speed", 1),
    ("message.usage.iterations", None),
    ("timestamp", "2026-03-23t19:32:26.487z"),
    ("timestamp", "2026-03-23T19:32:26.487+09:00"),
    ("timestamp", "2026-03-23T19:32:26.4871239Z"),
    ("timestamp", ""),
    ("version", ""),
    ("isSidechain", "true"),
    ("message.id", 7),
    ("requestId", 7),
    # Nulls: in a checked field anywhere (the line is skipped), or elsewhere (it is not).
    ("sessionId", None),
    ("requestId", None),
    ("costUSD", None),
    ("type", None),
    ("message.id", None),
    ("message.model", None),
    ("message.stop_sequence", None),
    ("message.usage.cache_read_input_tokens", None),
    ("message.content", [{"type": "tool_use", "id": None}]),
    ("message.content", [{"type": "text", "xid": None, "text": "id"}]),
    ("message.usage.iterations", [{"type": "message", "model": None}]),
]
# Lines written by hand: the null check is textual, quotes and blanks included.
RAW_LINES = [
    ("sessionId", '"sessionId" \t:null'),
    ("sessionId", '"sessionId": null'),
    ("type", '"a\\"id":null'),
    ("type", '"xid":null'),
    ("type", '"i d":null'),
    ("type", '"":null'),
    ("type", ":null"),
    # Each checked name (the reader tells most other names from their last two letters).
    *[("type", f'"{name.decode()}":null') for name in sorted(claude._NULL_CHECKED)],
    ("type", '"stop_details":null'),
]


def _reference(data: bytes, session: str) -> tuple[list[tuple[Any, ...]], int]:
    """The plain loop: split every line, parse, apply `_entries_of`."""
    entries: list[tuple[Any, ...]] = []
    malformed = 0
    for line in data.split(b"\n"):
        if claude.USAGE_MARKER not in line:
            continue
        try:
            obj = claude._loads(line)  # the JSON reader of the general rules (orjson)
        except ValueError:
            malformed += 1
            continue
        if not isinstance(obj, dict):
            continue
        if (
            b":null" in line
            and claude._NULL_FIELD_RE.search(line)
            and not claude._only_iteration_model_nulls(line, obj)
        ):
            continue
        entries.extend(tuple(entry) for entry in claude._entries_of(obj, session))
    return entries, malformed


def test_inline_checks_match_the_general_rules() -> None:
    lines = [json.dumps(BASE, separators=(",", ":"))]
    lines += [json.dumps(_variant(path, value), separators=(",", ":")) for path, value in VARIANTS]
    lines += ['{"usage":{ broken', '["usage":{]', '{"type":"user","message":{"content":"x"}}', ""]
    compact = json.dumps(BASE, separators=(",", ":"))
    for field, text in RAW_LINES:  # `"field":value,` replaced by the raw text
        start = compact.index(f'"{field}":')
        stop = compact.index(",", start)
        lines.append(compact[:start] + text + compact[stop:])
        lines.append(compact[:start] + text + "," + compact[start:])
    data = ("\n".join(lines) + "\n").encode()
    got, malformed = claude.parse_claude_bytes(data, "path-session")
    want, want_malformed = _reference(data, "path-session")
    assert [tuple(entry) for entry in got] == want
    assert malformed == want_malformed
    assert len(want) > 10  # the variants exercise both kept and dropped lines
