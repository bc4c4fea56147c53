"""Batch files (`aiswitch run --tasks FILE`): one task per line.

A plain line is a prompt. A line that starts with `{` is a JSON object with `prompt`
(required) and optionally `id`, `priority` (an integer, higher first), `timeout` (seconds)
and `options` (an object sent to the adapter). Blank lines and lines starting with `#` are
skipped. Every invalid line is reported, with its line number, before anything starts:
`UsageError` whose message lists the first few.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aiswitch.coordinator.request import BatchItem
from aiswitch.errors import UsageError

# How many bad lines an error lists before it says "and N more".
MAX_LISTED_ERRORS: Final = 5
_FIELDS: Final = frozenset({"id", "prompt", "priority", "timeout", "options"})


def parse_batch(text: str, source: str = "the tasks file") -> list[BatchItem]:
    items: list[BatchItem] = []
    problems: list[str] = []
    seen_ids: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            item = _item(line)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        if item.id is None:
            item.id = f"line-{number}"
        if item.id in seen_ids:
            problems.append(f"line {number}: id {item.id!r} is also on line {seen_ids[item.id]}")
            continue
        seen_ids[item.id] = number
        items.append(item)
    if problems:
        listed = "; ".join(problems[:MAX_LISTED_ERRORS])
        more = len(problems) - MAX_LISTED_ERRORS
        tail = f" (and {more} more)" if more > 0 else ""
        raise UsageError(
            f"{source}: {listed}{tail}",
            hint='a line is a prompt, or a JSON object like {"id": "a", "prompt": "..."}',
        )
    if not items:
        raise UsageError(f"{source} has no tasks", hint="write one task per line")
    return items


def _item(line: str) -> BatchItem:
    if not line.startswith("{"):
        return BatchItem(prompt=line)
    try:
        data: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError("a JSON task must be an object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(_FIELDS))})")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError('"prompt" must be a non-empty string')
    task_id = data.get("id")
    if task_id is not None and (not isinstance(task_id, str | int) or isinstance(task_id, bool)):
        raise ValueError('"id" must be a string or an integer')
    priority = data.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ValueError('"priority" must be an integer')
    timeout = data.get("timeout")
    if timeout is not None and (
        not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0
    ):
        raise ValueError('"timeout" must be a positive number of seconds')
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise ValueError('"options" must be an object')
    return BatchItem(
        prompt=prompt,
        id=None if task_id is None else str(task_id),
        priority=priority,
        timeout_s=None if timeout is None else float(timeout),
        options=options,
    )
