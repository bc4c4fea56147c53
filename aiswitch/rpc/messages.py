"""JSON-RPC 2.0 envelopes as pydantic models, and the one place bytes become messages.

`id` is strictly an int or a string (a float, bool or object id is an invalid request);
an error response whose request id could not be read carries `id: null`. `decode_line`
never raises: it returns an `Incoming` or an `Invalid` that says what to answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from aiswitch.rpc import codes

RequestId = StrictInt | StrictStr
Params = dict[str, Any] | list[Any] | None


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jsonrpc: Literal["2.0"]


class Request(_Envelope):
    id: RequestId
    method: StrictStr
    params: dict[str, Any] | list[Any] | None = None


class Notification(_Envelope):
    method: StrictStr
    params: dict[str, Any] | list[Any] | None = None


class ErrorObject(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: StrictInt
    message: StrictStr
    data: Any = None


class Response(_Envelope):
    id: RequestId
    result: Any


class ErrorResponse(_Envelope):
    id: RequestId | None
    error: ErrorObject


Message = Request | Notification | Response | ErrorResponse


@dataclass(frozen=True)
class Invalid:
    """A message that could not be read; `reply` is the error to send back, if any."""

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


def _is_id(value: Any) -> bool:
    return type(value) is int or type(value) is str


def _fast(obj: dict[str, Any]) -> Message | None:
    """The common, well-formed shapes, built without re-validating (the checks here are
    exactly what validation would check); anything else goes through pydantic."""
    if obj.get("jsonrpc") != "2.0":
        return None
    size = len(obj)
    params = obj.get("params")
    params_ok = params is None or type(params) is dict or type(params) is list
    method = obj.get("method")
    if type(method) is str and params_ok:
        if "id" in obj:
            if _is_id(obj["id"]) and size == 3 + ("params" in obj):
                return Request.model_construct(
                    jsonrpc="2.0", id=obj["id"], method=method, params=params
                )
        elif size == 2 + ("params" in obj):
            return Notification.model_construct(jsonrpc="2.0", method=method, params=params)
        return None
    if size == 3 and "result" in obj and _is_id(obj.get("id")):
        return Response.model_construct(jsonrpc="2.0", id=obj["id"], result=obj["result"])
    return None


def classify(obj: Any) -> Incoming:
    """Turn one decoded JSON value (not a batch) into a typed message or an `Invalid`."""
    if not isinstance(obj, dict):
        return Invalid(codes.INVALID_REQUEST, "a message must be a JSON object")
    fast = _fast(obj)
    if fast is not None:
        return fast
    raw_id = obj.get("id")
    known_id = raw_id if isinstance(raw_id, int | str) and not isinstance(raw_id, bool) else None
    try:
        if "method" in obj:
            if "id" in obj:
                return Request.model_validate(obj)
            return Notification.model_validate(obj)
        if "error" in obj:
            return ErrorResponse.model_validate(obj)
        if "result" in obj:
            return Response.model_validate(obj)
    except ValidationError as exc:
        # Only field locations go into the reason: values may be secrets.
        where = ", ".join(".".join(str(p) for p in e["loc"]) or "message" for e in exc.errors())
        kind = codes.INVALID_REQUEST
        if "method" not in obj:
            return Invalid(kind, f"invalid response ({where})", known_id, response=True)
        return Invalid(kind, f"invalid request ({where})", known_id)
    return Invalid(codes.INVALID_REQUEST, "neither a request nor a response", known_id)


def decode_line(line: bytes) -> list[Incoming] | Incoming:
    """Decode one line: a batch gives a list (possibly with `Invalid` items)."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return Invalid(codes.PARSE_ERROR, "not valid JSON")
    if isinstance(obj, list):
        if not obj:
            return Invalid(codes.INVALID_REQUEST, "empty batch")
        return [classify(item) for item in obj]
    return classify(obj)


def dumps(payload: Any) -> bytes:
    """One compact JSON line (never pretty-printed), newline-terminated, valid UTF-8.

    Text that is not valid Unicode (a lone surrogate) cannot be UTF-8: it is sent
    sent with ASCII escapes instead of failing the message."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:
        return json.dumps(payload, separators=(",", ":")).encode() + b"\n"


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
