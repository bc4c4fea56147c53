"""The JSON-RPC 2.0 envelope schema as pydantic models: the slow path of `classify`.

`aiswitch.rpc.messages.classify` recognises well-formed messages by hand (the checks
there are exactly what these models check) and comes here only for what it could not
place, to get the same verdict the models give and a reason naming the fields that are
wrong. Importing this module builds pydantic models, which costs start-up time: it is
imported on the first malformed message, never on an adapter's handshake path.

`id` is strictly an int or a string (a float, bool or object id is an invalid request);
an error response whose request id could not be read carries `id: null`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

from aiswitch.rpc import codes
from aiswitch.rpc import messages as light

RequestId = StrictInt | StrictStr


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


def validate(obj: dict[str, Any]) -> light.Incoming:
    """The models' verdict on one JSON object, as a light message or an `Invalid`."""
    raw_id = obj.get("id")
    known_id = raw_id if isinstance(raw_id, int | str) and not isinstance(raw_id, bool) else None
    try:
        if "method" in obj:
            if "id" in obj:
                request = Request.model_validate(obj)
                return light.Request(request.id, request.method, request.params)
            notification = Notification.model_validate(obj)
            return light.Notification(notification.method, notification.params)
        if "error" in obj:
            failure = ErrorResponse.model_validate(obj)
            error = failure.error
            return light.ErrorResponse(
                failure.id, light.ErrorObject(error.code, error.message, error.data)
            )
        if "result" in obj:
            response = Response.model_validate(obj)
            return light.Response(response.id, response.result)
    except ValidationError as exc:
        # Only field locations go into the reason: values may be secrets.
        where = ", ".join(".".join(str(p) for p in e["loc"]) or "message" for e in exc.errors())
        kind = codes.INVALID_REQUEST
        if "method" not in obj:
            return light.Invalid(kind, f"invalid response ({where})", known_id, response=True)
        return light.Invalid(kind, f"invalid request ({where})", known_id)
    return light.Invalid(codes.INVALID_REQUEST, "neither a request nor a response", known_id)
