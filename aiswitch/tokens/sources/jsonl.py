"""JSON for the log and ledger readers: one fast parser, and the objects of JSON lines.

Contract: `loads(data)` parses JSON (orjson; the stdlib where it is missing), raising
`JSONError`; `json_objects(data)` is the JSON objects of the non-blank lines of `data`, in
order, and how many non-blank lines were not a JSON object (malformed).
"""

from __future__ import annotations

from typing import Any

try:  # orjson parses these lines several times faster; the stdlib is the fallback
    import orjson

    loads: Any = orjson.loads
    JSONError: Any = orjson.JSONDecodeError
except ImportError:  # pragma: no cover - orjson is a declared dependency
    import json

    loads = json.loads
    JSONError = ValueError


def json_objects(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of the non-blank lines of `data`, and how many lines were not one."""
    objects: list[dict[str, Any]] = []
    malformed = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            value = loads(line)
        except JSONError:
            malformed += 1
            continue
        if isinstance(value, dict):
            objects.append(value)
        else:
            malformed += 1
    return objects, malformed
