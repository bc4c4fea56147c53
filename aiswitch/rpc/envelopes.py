"""The JSON-RPC 2.0 envelope schema as pydantic models: the reference, not a check.

`aiswitch.rpc.messages.classify` is the one envelope check on the message path; it
checks by hand exactly what these models check. The models are the declared schema
(`model_json_schema()` gives it) and the reference that tests/test_rpc_envelopes.py
holds `classify` to, verdict for verdict. Nothing that reads messages imports this
module (building pydantic models costs start-up time).

`id` is strictly an int or a string (a float, bool or object id is an invalid request);
an error response whose request id could not be read carries `id: null`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError

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


Envelope = Request | Notification | Response | ErrorResponse


def parse(obj: dict[str, Any]) -> Envelope | None:
    """What the models make of one JSON object: the envelope, or None when invalid.

    The model is chosen by the keys, as a reader must: `method` (with `id`: a request)
    or `error` or `result`."""
    model: type[Envelope]
    if "method" in obj:
        model = Request if "id" in obj else Notification
    elif "error" in obj:
        model = ErrorResponse
    elif "result" in obj:
        model = Response
    else:
        return None
    try:
        return model.model_validate(obj)
    except ValidationError:
        return None
