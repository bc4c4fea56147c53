"""JSON-RPC 2.0 envelopes, and the one place bytes become messages and messages bytes.

Contract:
- `decode_line` and `classify` never raise: they return a message (`Request`,
  `Notification`, `Response`, `ErrorResponse`) or an `Invalid` that says what to answer.
  `id` is strictly an int or a string (a float, bool or object id is an invalid
  request); an error response whose request id could not be read carries `id: null`.
- `classify` is the one envelope check: every message either side reads goes through
  it. It checks by hand exactly what the pydantic models in `aiswitch.rpc.envelopes`
  check (tests/test_rpc_envelopes.py holds the two to the same verdicts, and those
  models are the schema, not a second check), and for a malformed message it gives a
  reason that names the wrong fields, never their values. No pydantic on this path, so
  an adapter's handshake never builds a model.
- The message classes are plain slotted dataclasses (cheap to build: one per message);
  treat them as read-only.
- `dumps` writes one compact line (never pretty-printed), newline-terminated, valid
  UTF-8; text that is not valid Unicode (a lone surrogate) is sent with ASCII escapes
  instead of failing the message. Enum members go out as their values and UUIDs as
  strings; any other value JSON cannot represent raises `TypeError`.
- `loads` reads one line with the json module's exact semantics (integers of any size,
  lone surrogates, NaN and Infinity), through orjson when `use_orjson()` has been called
  and the line is one orjson reads identically, through json otherwise.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from math import isfinite
from typing import Any

from aiswitch.rpc import codes

Params = dict[str, Any] | list[Any] | None


@dataclass(slots=True)
class Request:
    id: int | str
    method: str
    params: Params = None


@dataclass(slots=True)
class Notification:
    method: str
    params: Params = None


@dataclass(slots=True)
class Response:
    id: int | str
    result: Any


@dataclass(slots=True)
class ErrorObject:
    code: int
    message: str
    data: Any = None


@dataclass(slots=True)
class ErrorResponse:
    id: int | str | None
    error: ErrorObject


Message = Request | Notification | Response | ErrorResponse


@dataclass(frozen=True)
class Invalid:
    """A message that could not be read; `answerable` says whether to send an error."""

    code: int
    reason: str
    id: int | str | None = None

    response: bool = False

    @property
    def answerable(self) -> bool:
        # Per the spec a parse error or an invalid request is answered (id null when the
        # id is unknown); an invalid *response* is never answered (that could loop).
        return not self.response


Incoming = Message | Invalid


def classify(obj: Any) -> Incoming:
    """Turn one decoded JSON value (not a batch) into a typed message or an `Invalid`.

    The checks are the envelope models' (`extra="forbid"`, strict int or str ids, str
    methods, object/array/null params, an error object with an int code and a str
    message); the well-formed shapes are recognised first, in the order they are common."""
    if type(obj) is not dict:
        return Invalid(codes.INVALID_REQUEST, "a message must be a JSON object")
    if obj.get("jsonrpc") == "2.0":
        size = len(obj)
        method = obj.get("method")
        if type(method) is str:
            params = obj.get("params")
            if params is None or type(params) is dict or type(params) is list:
                if "params" in obj:
                    size -= 1
                if size == 3:
                    request_id = obj.get("id")
                    if type(request_id) is int or type(request_id) is str:
                        return Request(request_id, method, params)
                elif size == 2:
                    return Notification(method, params)
        elif size == 3 and "method" not in obj:
            request_id = obj.get("id")
            if "result" in obj:
                if type(request_id) is int or type(request_id) is str:
                    return Response(request_id, obj["result"])
            else:
                error = obj.get("error")
                if (
                    "id" in obj
                    and (request_id is None or type(request_id) is int or type(request_id) is str)
                    and type(error) is dict
                    and type(error.get("code")) is int
                    and type(error.get("message")) is str
                ):
                    return ErrorResponse(
                        request_id, ErrorObject(error["code"], error["message"], error.get("data"))
                    )
    return _explain(obj)


def _explain(obj: dict[Any, Any]) -> Invalid:
    """Why `obj` is not a valid envelope: the fields that are wrong, never their values."""
    raw_id = obj.get("id")
    known_id = raw_id if type(raw_id) is int or type(raw_id) is str else None
    wrong: list[str] = []
    if obj.get("jsonrpc") != "2.0":
        wrong.append("jsonrpc")
    if "method" in obj:
        allowed = {"jsonrpc", "method", "params", "id"}
        if type(obj["method"]) is not str:
            wrong.append("method")
        params = obj.get("params")
        if not (params is None or type(params) is dict or type(params) is list):
            wrong.append("params")
        if "id" in obj and known_id is None:
            wrong.append("id")
        wrong.extend(_extra(obj, allowed))
        return Invalid(codes.INVALID_REQUEST, _reason("invalid request", wrong), known_id)
    if "error" in obj:
        wrong.extend(_extra(obj, {"jsonrpc", "id", "error"}))
        if "id" not in obj or (raw_id is not None and known_id is None):
            wrong.append("id")
        error = obj["error"]
        if type(error) is not dict:
            wrong.append("error")
        else:
            if type(error.get("code")) is not int:
                wrong.append("error.code")
            if type(error.get("message")) is not str:
                wrong.append("error.message")
    elif "result" in obj:
        wrong.extend(_extra(obj, {"jsonrpc", "id", "result"}))
        if known_id is None:
            wrong.append("id")
    else:
        # Answered (the spec answers an invalid request): nothing says it is a reply.
        return Invalid(codes.INVALID_REQUEST, "neither a request nor a response", known_id)
    return Invalid(
        codes.INVALID_REQUEST, _reason("invalid response", wrong), known_id, response=True
    )


def _extra(obj: dict[Any, Any], allowed: set[str]) -> list[str]:
    return sorted(str(key) for key in obj if key not in allowed)


def _reason(what: str, wrong: list[str]) -> str:
    return f"{what} ({', '.join(wrong)})" if wrong else what


# Errors that mean "not valid JSON" (RecursionError: nesting deeper than the stack).
DECODE_ERRORS = (ValueError, UnicodeDecodeError, RecursionError)


def decode_line(line: bytes) -> list[Incoming] | Incoming:
    """Decode one line: a batch gives a list (possibly with `Invalid` items)."""
    try:
        obj = loads(line)
    except DECODE_ERRORS:
        return Invalid(codes.PARSE_ERROR, "not valid JSON")
    if type(obj) is list:
        if not obj:
            return Invalid(codes.INVALID_REQUEST, "empty batch")
        return [classify(item) for item in obj]
    return classify(obj)


# -- the codec -----------------------------------------------------------------------

# orjson turns an integer outside 64 bits into a float, where json keeps it exact. Such
# an integer has at least 19 digits, so a line with a run of 19 digits goes to json.
_DIGIT_MAP = bytes(ord("0") if ord("0") <= b <= ord("9") else ord(" ") for b in range(256))
_LONG_NUMBER = b"0" * 19

_orjson_loads: Callable[[bytes], Any] | None = None
_orjson_dumps: Callable[[Any], bytes] | None = None


def _json_default(value: Any) -> Any:
    # orjson writes these natively; json is taught the same, so both codecs agree.
    if isinstance(value, Enum):
        return value.value
    uuid = sys.modules.get("uuid")  # no UUID exists unless uuid was imported
    if uuid is not None and isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


_JSON_UTF8 = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_json_default)
_JSON_ASCII = json.JSONEncoder(separators=(",", ":"), default=_json_default)


def use_orjson() -> bool:
    """Encode and decode through orjson from now on (for this process), where it gives
    exactly what json gives; False when orjson is not installed. Importing orjson costs
    start-up time, which is why this is not done at import."""
    global _orjson_loads, _orjson_dumps
    if _orjson_dumps is not None:
        return True
    try:
        import orjson
    except ImportError:
        return False
    # Subclasses, dataclasses and datetimes are left to json (orjson would write some
    # that json refuses); the newline comes with the encoding, not as another copy.
    options = (
        orjson.OPT_APPEND_NEWLINE
        | orjson.OPT_PASSTHROUGH_SUBCLASS
        | orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_DATETIME
    )
    raw_dumps = orjson.dumps

    def orjson_dumps(payload: Any) -> bytes:
        return raw_dumps(payload, option=options)

    _orjson_loads = orjson.loads
    _orjson_dumps = orjson_dumps
    return True


def loads(line: bytes) -> Any:
    """One JSON value; raises one of `DECODE_ERRORS` when the line is not JSON."""
    fast = _orjson_loads
    if fast is not None and _LONG_NUMBER not in line.translate(_DIGIT_MAP):
        try:
            return fast(line)
        except ValueError:
            # orjson refuses some lines json accepts (lone surrogates, NaN, a BOM):
            # json has the last word.
            pass
    return json.loads(line)


def _has_nonfinite(value: Any) -> bool:
    """Whether `value` holds a float that orjson writes as null (NaN, an infinity).

    Walks what orjson writes natively (anything else raised TypeError before this is
    asked); strings, ints, bools and None, the bulk of a payload, are passed over."""
    kind = type(value)
    if kind is float:
        return not isfinite(value)
    if kind is dict:
        value = value.values()
    elif kind is not list and kind is not tuple:
        return isinstance(value, Enum) and _has_nonfinite(value.value)
    # Scalars are skipped without a call each: most payloads hold nothing else.
    return any(map(_has_nonfinite, [item for item in value if type(item) not in _SCALARS]))


# Values that can never hide a NaN.
_SCALARS = frozenset((str, int, bool, type(None)))


def dumps(payload: Any) -> bytes:
    """One compact JSON line, newline-terminated, valid UTF-8 (see the module contract)."""
    fast = _orjson_dumps
    if fast is not None:
        try:
            data = fast(payload)
        except TypeError:
            pass  # big ints, non-str keys, lone surrogates, subclasses: json decides
        else:
            # orjson writes NaN and infinities as null where json writes NaN/Infinity;
            # a line without null had neither, and a null is mostly a None (a task's
            # unset fields): only a payload that holds such a float goes to json.
            if b"null" not in data or not _has_nonfinite(payload):
                return data
    text = _JSON_UTF8.encode(payload)
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:
        return _JSON_ASCII.encode(payload).encode() + b"\n"


# -- payloads ------------------------------------------------------------------------


def request_payload(request_id: int | str, method: str, params: Params) -> dict[str, Any]:
    payload: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        payload["params"] = params
    return payload


def notification_payload(method: str, params: Params) -> dict[str, Any]:
    payload: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        payload["params"] = params
    return payload


def result_payload(request_id: int | str, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_payload(
    request_id: int | str | None, code: int, message: str, data: Any = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}
