"""Claude Code's own logs: `projects/**/*.jsonl`, read with ccusage's rules.

Contract: `claude_roots(env)` lists the Claude config directories (`CLAUDE_CONFIG_DIR`, comma
separated, each a config dir holding `projects/` or the `projects/` dir itself; else
`$XDG_CONFIG_HOME/claude` (default `~/.config/claude`) and `~/.claude`, those that have a
`projects/` dir). `claude_files(roots)` lists the `*.jsonl` files under them in ccusage's order
(sorted by path). `parse_claude_bytes` turns the complete lines of a file into `ClaudeEntry`
tuples, and `dedupe_claude_entries` applies ccusage's duplicate rules across all files and
yields report `Row`s (source "claude", agent "claude").

The rules, as ccusage 20.0.24 applies them (checked against it by tests/test_ccusage_parity.py):

- A line counts when it holds `"usage":{` (Claude Code writes compact JSON), parses as a JSON
  object with `timestamp` (RFC 3339 with a zone) and `message.usage` with integer
  `input_tokens` and `output_tokens` (an "agent progress" line nesting the same under
  `data.message` counts too). Its `type` is not looked at.
- It is skipped when one of ccusage's non-nullable fields is `null` anywhere in the line (`id`,
  `cwd`, `model`, `speed`, `costUSD`, `version`, `sessionId`, `requestId`, `isApiErrorMessage`,
  the cache token counts; a null `model` inside `usage.iterations` is allowed), when a field has
  the wrong type, when `version` is not `N.N.N…`, or when `sessionId`, `requestId`, `message.id`
  or `message.model` is an empty string. Skipped lines that are not JSON are counted as
  malformed; the others are silently not usage.
- Cache writes are the 5-minute + 1-hour buckets of `usage.cache_creation` when present, else
  `cache_creation_input_tokens`. Model `<synthetic>` is kept under that name (priced at $0);
  `usage.speed == "fast"` appends `-fast` to the model. `costUSD` is the reported cost.
  Advisor iterations (`usage.iterations[type=advisor_message]`) become extra entries with
  message id `<id>:advisor:<n>`.
- Duplicates, in file order: entries with a message id and a request id are the same when both
  ids match (across files and sessions); entries with a message id and no request id are the
  same when the session and the timestamp match too; an entry without a message id is never a
  duplicate. A sidechain replay (same message id and session, another request id, one of the
  two `isSidechain: true`) is a duplicate too. Of two duplicates the non-sidechain one is kept,
  else the larger token total, else the first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, cast

import msgspec

from aiswitch.tokens.inputs import claude_files as claude_files  # re-exported
from aiswitch.tokens.inputs import claude_roots as claude_roots  # re-exported
from aiswitch.tokens.sources.jsonl import JSONError as _JSONError
from aiswitch.tokens.sources.jsonl import loads as _loads

SOURCE = "claude"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
USAGE_MARKER = b'"usage":{'
# ccusage's non-nullable fields: a line with one of them `null` anywhere is skipped.
_NULL_CHECKED = frozenset(
    {
        b"id",
        b"cwd",
        b"model",
        b"speed",
        b"costUSD",
        b"version",
        b"sessionId",
        b"requestId",
        b"isApiErrorMessage",
        b"cache_read_input_tokens",
        b"cache_creation_input_tokens",
    }
)
# The last two letters of each checked name (none is shorter).
_ENDINGS = frozenset(name[-2:] for name in _NULL_CHECKED)
_NULL_FIELD_RE = re.compile(b'"(' + b"|".join(sorted(_NULL_CHECKED)) + rb')"\s*:null')
# What `\s` matches inside a line.
_BLANKS = frozenset(b" \t\r\f\v")
_SEMVER_PREFIX_RE = re.compile(r"^\d+\.\d+\.\d")


class ClaudeEntry(NamedTuple):
    """One usage line of a Claude log, before duplicates are removed."""

    ts_ms: int
    session_id: str
    message_id: str | None
    request_id: str | None
    sidechain: bool
    model: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int
    cost_usd: float | None


def session_from_path(path: Path) -> str:
    """ccusage's session id of a file: `<project>/<session>.jsonl` or the parent folder."""
    parts = path.parts
    try:
        index = len(parts) - 1 - parts[::-1].index("projects")
    except ValueError:
        index = -1
    relative = parts[index + 1 :]
    if len(relative) == 2 and relative[-1].endswith(".jsonl") and len(relative[-1]) > 6:
        return relative[-1][:-6]
    if len(relative) >= 4 and relative[-2] == "subagents":
        return relative[-3]
    return relative[-2] if len(relative) >= 2 else "unknown"


# Token counts `_usage_counts` accepts: integers from 0 (up to 2**64 - 1, as orjson reads
# larger ones as floats, which are refused; counts past msgspec's int64 bound take the
# general path). Ids and names: `None` or non-empty.
_Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Text = Annotated[str, msgspec.Meta(min_length=1)]


class _Buckets(msgspec.Struct, gc=False):
    ephemeral_5m_input_tokens: _Count = 0
    ephemeral_1h_input_tokens: _Count = 0


class _Usage(msgspec.Struct, gc=False):
    input_tokens: _Count
    output_tokens: _Count
    cache_read_input_tokens: _Count = 0
    cache_creation_input_tokens: _Count = 0
    speed: Literal["standard", "fast"] | None = None
    cache_creation: _Buckets | None = None
    # Claude Code 2.1 writes `"iterations":[]` in every usage: empty, it adds nothing. Any
    # other value (advisor iterations, null) fails here and takes the general path.
    iterations: Annotated[list[Any], msgspec.Meta(max_length=0)] = []


class _Message(msgspec.Struct, gc=False):
    usage: _Usage
    id: _Text | None = None
    model: _Text | None = None


class _Line(msgspec.Struct, gc=False):
    """The common shape of a usage line: a direct assistant record. Every other field of
    the line is skipped unread (JSON syntax still checked), which is what makes it fast.
    These structs hold no cycles: `gc=False` keeps them out of the garbage collector.
    The field types are the checks of `_direct_fields` and `_usage_counts`."""

    timestamp: str
    message: _Message
    sessionId: _Text | None = None
    requestId: _Text | None = None
    isSidechain: bool | None = None
    costUSD: float | None = None
    version: str | None = None


_decode_line = msgspec.json.Decoder(_Line).decode


def parser_for(path: Path) -> Callable[[bytes], tuple[list[tuple[Any, ...]], int]]:
    """`parse_claude_bytes` for the lines of the file at `path`."""
    return partial(parse_claude_bytes, path_session=session_from_path(path))


def parse_claude_bytes(data: bytes, path_session: str) -> tuple[list[tuple[Any, ...]], int]:
    """Entries (`ClaudeEntry` fields, as plain tuples) of the complete lines in `data`, and
    how many lines were malformed JSON.

    This loop runs once per usage line, so the common shape (a direct assistant line without
    advisor `usage.iterations` or a null in a checked field) is decoded by msgspec into
    `_Line`, whose types are `_direct_fields`' and `_usage_counts`' type rules, and its
    remaining rules are applied inline here. A line msgspec refuses for any reason (another
    shape, a wrong type, bad JSON) goes to `_general_entries`, which decides it exactly as
    before.

    Where msgspec is more lenient than orjson, and only in parts of a line no rule reads
    (bytes that are not UTF-8, or a number beyond a double's range, inside text or fields
    skipped unread), the line counts: as ccusage, which reads such lines, counts it."""
    entries: list[tuple[Any, ...]] = []
    append = entries.append
    malformed = 0
    decode = _decode_line
    fromiso = datetime.fromisoformat
    epoch, millisecond = _EPOCH, _MILLISECOND
    semver_ok: dict[str, bool] = {}  # a log holds a handful of versions: match each once
    marker = USAGE_MARKER
    find, rfind = data.find, data.rfind
    position = 0
    # The next `:null` in the data: a line holding one after a checked field's name takes the
    # general path (found here with one scan of the data, not one scan per line).
    null_at = find(b":null")
    while True:
        # Jump from one usage marker to the next: lines without one (user turns, summaries)
        # are never copied out of `data`, which is what splitting every line would cost.
        hit = find(marker, position)
        if hit < 0:
            break
        start = rfind(b"\n", position, hit) + 1 or position
        end = find(b"\n", hit)
        if end < 0:
            end = len(data)
        line = data[start:end]
        position = end + 1
        checked_null = False
        while 0 <= null_at < end:
            if (
                null_at >= start
                # Most nulls follow a name no rule checks ("stop_sequence"): told from the
                # last two letters of the name before the quote, without the call.
                and (data[null_at - 1] != 0x22 or data[null_at - 3 : null_at - 1] in _ENDINGS)
                and _names_a_checked_field(data, start, null_at)
            ):
                checked_null = True
                break
            null_at = find(b":null", null_at + 1)
        if checked_null:
            record = None
        else:
            try:
                record = decode(line)
            except ValueError:  # msgspec's decode and validation errors, bad UTF-8
                record = None
        if record is None:
            found, bad = _general_entries(line, path_session)
            entries.extend(found)
            malformed += bad
            continue
        timestamp = record.timestamp
        try:
            parsed = fromiso(timestamp)
        except ValueError:
            continue
        if parsed.tzinfo is None or ("T" not in timestamp and "t" not in timestamp):
            continue  # as `_parse_ts_ms`
        message = record.message
        usage = message.usage
        buckets = usage.cache_creation
        if buckets is None:
            write = usage.cache_creation_input_tokens
            write_1h = 0
        else:
            write_1h = buckets.ephemeral_1h_input_tokens
            write = buckets.ephemeral_5m_input_tokens + write_1h
        version = record.version
        if version is not None:
            ok = semver_ok.get(version)
            if ok is None:
                ok = semver_ok[version] = _SEMVER_PREFIX_RE.match(version) is not None
            if not ok:
                continue
        session_id = record.sessionId
        model = message.model
        speed = usage.speed
        if model is not None and speed == "fast":
            model = f"{model}-fast"
        append(
            (
                (parsed - epoch) // millisecond,
                session_id if session_id is not None else path_session,
                message.id,
                record.requestId,
                record.isSidechain is True,
                model,
                usage.input_tokens,
                usage.output_tokens,
                usage.cache_read_input_tokens,
                write,
                write_1h,
                record.costUSD,
            )
        )
    return entries, malformed


def _names_a_checked_field(data: bytes, start: int, at: int) -> bool:
    """Whether the `:null` at `at` ends a match of `_NULL_FIELD_RE` within the line that
    starts at `start`: `"<checked name>"`, then blanks. (The name holds no quote, so its
    opening quote is the nearest one before its closing quote.)"""
    end = at
    while end > start and data[end - 1] in _BLANKS:
        end -= 1
    if end <= start or data[end - 1] != 0x22:  # '"'
        return False
    opening = data.rfind(b'"', start, end - 1)
    return opening >= 0 and data[opening + 1 : end - 1] in _NULL_CHECKED


def _general_entries(line: bytes, path_session: str) -> tuple[list[ClaudeEntry], int]:
    """Entries of a usage line of any shape, and 1 if it is not JSON (else 0)."""
    try:
        obj = _loads(line)
    except _JSONError:
        return [], 1
    if type(obj) is not dict:
        return [], 0
    if (
        b":null" in line
        and _NULL_FIELD_RE.search(line)
        and not _only_iteration_model_nulls(line, obj)
    ):
        return [], 0
    return _entries_of(obj, path_session), 0


def _only_iteration_model_nulls(line: bytes, obj: dict[str, Any]) -> bool:
    """ccusage allows `"model":null` inside `message.usage.iterations`, and only there."""
    nulls = [match.group(1) for match in _NULL_FIELD_RE.finditer(line)]
    if any(name != b"model" for name in nulls):
        return False
    message = obj.get("message")
    usage = message.get("usage") if isinstance(message, dict) else None
    iterations = usage.get("iterations") if isinstance(usage, dict) else None
    if not isinstance(iterations, list):
        return False
    allowed = sum(
        1
        for item in iterations
        if isinstance(item, dict) and "model" in item and item["model"] is None
    )
    return len(nulls) <= allowed


def _entries_of(obj: dict[str, Any], path_session: str) -> list[ClaudeEntry]:
    fields = _direct_fields(obj)
    if fields is None:
        fields = _progress_fields(obj)
        if fields is None:
            return []
    timestamp, message, session_id, request_id, sidechain, cost, version = fields
    ts_ms = _parse_ts_ms(timestamp)
    if ts_ms is None:
        return []
    usage = message["usage"]
    counts = _usage_counts(usage)
    model = message.get("model")
    message_id = message.get("id")
    if not (
        (model is None or isinstance(model, str))
        and (message_id is None or isinstance(message_id, str))
        and counts is not None
    ):
        return []
    if (
        (version is not None and not _SEMVER_PREFIX_RE.match(version))
        or session_id == ""
        or request_id == ""
        or message_id == ""
        or model == ""
    ):
        return []
    if model is not None and usage.get("speed") == "fast":
        model = f"{model}-fast"
    session = session_id if session_id is not None else path_session
    entries = [ClaudeEntry(ts_ms, session, message_id, request_id, sidechain, model, *counts, cost)]
    iterations = usage.get("iterations")
    if isinstance(iterations, list):
        advisor_index = 0
        for item in iterations:
            if not isinstance(item, dict) or item.get("type") != "advisor_message":
                continue
            advisor_model = item.get("model")
            advisor_counts = _usage_counts(item)
            if not isinstance(advisor_model, str) or not advisor_model or advisor_counts is None:
                continue
            advisor_id = f"{message_id}:advisor:{advisor_index}" if message_id else None
            advisor_index += 1
            entries.append(
                ClaudeEntry(
                    ts_ms,
                    session,
                    advisor_id,
                    request_id,
                    sidechain,
                    advisor_model,
                    *advisor_counts,
                    None,
                )
            )
    return entries


_Fields = tuple[str, dict[str, Any], str | None, str | None, bool, float | None, str | None]


def _direct_fields(obj: dict[str, Any]) -> _Fields | None:
    return _message_fields(obj, obj.get("sessionId"), obj.get("version"))


def _progress_fields(obj: dict[str, Any]) -> _Fields | None:
    """A progress line carries the assistant record inside `data.message`; its session id
    is the outer line's, and it has no version of its own."""
    data = obj.get("data")
    inner = data.get("message") if isinstance(data, dict) else None
    if not isinstance(inner, dict):
        return None
    return _message_fields(inner, obj.get("sessionId"), None)


def _message_fields(record: dict[str, Any], session_id: object, version: object) -> _Fields | None:
    timestamp = record.get("timestamp")
    message = record.get("message")
    if not isinstance(timestamp, str) or not isinstance(message, dict):
        return None
    if not isinstance(message.get("usage"), dict):
        return None
    request_id = record.get("requestId")
    sidechain = record.get("isSidechain")
    cost = record.get("costUSD")
    if not (
        _opt_str(session_id)
        and _opt_str(request_id)
        and _opt_str(version)
        and (sidechain is None or isinstance(sidechain, bool))
        and _opt_number(cost)
    ):
        return None
    # The checks above made each of these a str or None.
    text = cast("str | None", session_id), cast("str | None", request_id)
    return timestamp, message, *text, sidechain is True, _num(cost), cast("str | None", version)


def _opt_str(value: object) -> bool:
    return value is None or isinstance(value, str)


def _opt_number(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _usage_counts(usage: dict[str, Any]) -> tuple[int, int, int, int, int] | None:
    """(input, output, cache read, cache write, of which 1h) or None if ccusage rejects it."""
    inp = usage.get("input_tokens")
    out = usage.get("output_tokens")
    if not (type(inp) is int and type(out) is int and inp >= 0 and out >= 0):
        return None
    read = usage.get("cache_read_input_tokens", 0)
    write = usage.get("cache_creation_input_tokens", 0)
    if not (type(read) is int and type(write) is int and read >= 0 and write >= 0):
        return None
    speed = usage.get("speed")
    if speed is not None and speed not in ("standard", "fast"):
        return None
    buckets = usage.get("cache_creation")
    write_1h = 0
    if buckets is not None:
        if not isinstance(buckets, dict):
            return None
        five = buckets.get("ephemeral_5m_input_tokens", 0)
        hour = buckets.get("ephemeral_1h_input_tokens", 0)
        if not (type(five) is int and type(hour) is int and five >= 0 and hour >= 0):
            return None
        write = five + hour
        write_1h = hour
    return inp, out, read, write, write_1h


def _parse_ts_ms(text: str) -> int | None:
    """RFC 3339 with a zone, to milliseconds; anything else (no zone, date only) is None."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None or "T" not in text.upper():
        return None
    return (parsed - _EPOCH) // _MILLISECOND


# Positions of ClaudeEntry fields: the index hands back plain tuples, read by position.
E_TS, E_SESSION, E_MESSAGE, E_REQUEST, E_SIDECHAIN = 0, 1, 2, 3, 4


def dedupe_claude_entries(
    entries: Iterable[tuple[Any, ...]], slots: list[int] | None = None
) -> list[tuple[Any, ...]]:
    """ccusage's duplicate rules (see the module docstring), in input order: each kept entry
    sits where the first entry of its duplicates was. `slots`, when given, receives for each
    kept entry the input position of that first entry (what orders entries of equal time)."""
    kept: list[tuple[Any, ...]] = []
    note = slots.append if slots is not None else None
    exact: dict[tuple[Any, ...], int] = {}
    # (message id, session) -> index of the kept entry, or a list when there are several.
    routes: dict[tuple[str, str], int | list[int]] = {}

    def add_route(route: tuple[str, str], index: int) -> None:
        held = routes.get(route)
        if held is None:
            routes[route] = index
        elif isinstance(held, int):
            if held != index:
                routes[route] = [held, index]
        elif index not in held:
            held.append(index)

    for at, entry in enumerate(entries):
        message_id = entry[E_MESSAGE]
        if message_id is None:
            kept.append(entry)
            if note is not None:
                note(at)
            continue
        request_id = entry[E_REQUEST]
        session = entry[E_SESSION]
        if request_id is not None:
            key: tuple[Any, ...] = (message_id, request_id)
        else:
            key = (message_id, None, session, entry[E_TS])
        index = exact.get(key)
        if index is not None:
            held = kept[index]
            if held[E_MESSAGE] != message_id or held[E_REQUEST] != request_id:
                index = None
        route = (message_id, session)
        if index is None:
            found = routes.get(route)
            if found is None:
                # The common case, a message met for the first time: `add_route` inlined.
                exact[key] = routes[route] = len(kept)
                kept.append(entry)
                if note is not None:
                    note(at)
                continue
            for candidate in [found] if isinstance(found, int) else found:
                held = kept[candidate]
                if held[E_MESSAGE] == message_id and (entry[E_SIDECHAIN] or held[E_SIDECHAIN]):
                    index = candidate
                    break
        if index is None:
            exact[key] = len(kept)
            add_route(route, len(kept))
            kept.append(entry)
            if note is not None:
                note(at)
            continue
        held = kept[index]
        if held[E_SESSION] != session:
            # Either session's later sidechain replays must still find the survivor.
            add_route(route, index)
            add_route((message_id, held[E_SESSION]), index)
        if _replaces(entry, held):
            kept[index] = entry
            exact[key] = index
            add_route(route, index)
    return kept


def _replaces(candidate: tuple[Any, ...], held: tuple[Any, ...]) -> bool:
    if candidate[E_SIDECHAIN] != held[E_SIDECHAIN]:
        return bool(held[E_SIDECHAIN])
    return bool(sum(candidate[6:10]) > sum(held[6:10]))  # input + output + cache read + write


def rows_from_entries(entries: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Report rows (plain tuples in `Row` order) of deduplicated entries.

    Anthropic counts cache reads and writes apart from input: already normalised.
    """
    return [
        (
            ts_ms / 1000.0,
            SOURCE,
            "claude",
            None,
            None,
            model,
            None,
            session,
            message_id,
            request_id,
            inp,
            out,
            read,
            write,
            0,
            write_1h,
            cost,
            "unpriced" if cost is None else "reported",
            None,  # host: the logs name none
            None,  # branch
            None,  # caller
            1,  # requests: an entry of the log is one
        )
        for (
            ts_ms,
            session,
            message_id,
            request_id,
            _sidechain,
            model,
            inp,
            out,
            read,
            write,
            write_1h,
            cost,
        ) in entries
    ]
