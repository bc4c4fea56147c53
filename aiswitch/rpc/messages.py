"""JSON-RPC 2.0 envelopes, and the one place bytes become messages and messages bytes.

Contract:
- `decode_line` and `classify` never raise: they return a message (`Request`,
  `Notification`, `Response`, `ErrorResponse`) or an `Invalid` that says what to answer.
  `id` is strictly an int or a string (a float, bool or object id is an invalid
  request); an error response whose request id could not be read carries `id: null`.
- Well-formed messages are recognised by hand, with exactly the checks the pydantic
  envelope models in `aiswitch.rpc.envelopes` make (tests/test_rpc_peer.py holds the
  two to the same verdicts); only what fails those checks goes through the models, for
  the verdict and a reason that names fields, never values. So a process that only ever
  sees well-formed messages (an adapter's handshake) never builds a pydantic model.
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
from typing import Any

from aiswitch.rpc import codes

Params = dict[str, Any] | list[Any] | None


@dataclass(frozen=True, slots=True)
class Request:
    id: int | str
    method: str
    params: Params = None


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: Params = None


@dataclass(frozen=True, slots=True)
class Response:
    id: int | str
    result: Any


@dataclass(frozen=True, slots=True)
class ErrorObject:
    code: int
    message: str
    data: Any = None


@dataclass(frozen=True, slots=True)
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


def _fast(obj: dict[str, Any]) -> Message | None:
    """The well-formed shapes, with exactly the checks the envelope models make
    (`extra="forbid"`, strict int or str ids, str methods, object/array/null params,
    an error object with an int code and a str message); None for anything else."""
    if obj.get("jsonrpc") != "2.0":
        return None
    size = len(obj)
    if "method" in obj:
        method = obj["method"]
        params = obj.get("params")
        if type(method) is not str or not (
            params is None or type(params) is dict or type(params) is list
        ):
            return None
        has_params = "params" in obj
        if "id" in obj:
            request_id = obj["id"]
            if (type(request_id) is int or type(request_id) is str) and size == 3 + has_params:
                return Request(request_id, method, params)
            return None
        if size == 2 + has_params:
            return Notification(method, params)
        return None
    if size != 3:
        return None
    request_id = obj.get("id")
    if "result" in obj:
        if type(request_id) is int or type(request_id) is str:
            return Response(request_id, obj["result"])
        return None
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
    return None


def classify(obj: Any) -> Incoming:
    """Turn one decoded JSON value (not a batch) into a typed message or an `Invalid`."""
    if type(obj) is not dict:
        return Invalid(codes.INVALID_REQUEST, "a message must be a JSON object")
    fast = _fast(obj)
    if fast is not None:
        return fast
    # Only malformed messages get here: the models say what is wrong with them.
    from aiswitch.rpc.envelopes import validate

    return validate(obj)


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
            # a line without null had neither.
            if b"null" not in data:
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
