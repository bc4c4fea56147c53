"""How a request's outcome becomes its answer line (the peer's answering contract).

`answer_line` is the one place a handler's result or failure is encoded: a result goes out
as given (a pydantic model as its JSON form, `model_json`); `MethodError` keeps its code
and message; a pydantic `ValidationError` becomes -32602 naming only the fields; anything
else becomes -32603 with no detail; a result that cannot be encoded is -32603 too, and one
over the line limit -32007. No traceback or value ever goes on the wire. `batch_line` joins
the answers of a batch into one array under the same limit.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any, cast

from aiswitch.rpc import codes, messages
from aiswitch.rpc.errors import MessageTooLargeError, MethodError
from aiswitch.rpc.messages import error_payload

if TYPE_CHECKING:
    from pydantic import ValidationError

    from aiswitch.rpc.pending import RequestId

_JSON_TYPES = (dict, list, str, int, float, bool, type(None))


def answer_line(
    request_id: RequestId,
    method: str,
    result: Any,
    failure: Exception | None,
    line_limit: int,
    log: logging.Logger,
) -> bytes:
    """The answer to request `request_id` (of `method`): its `result`, or its `failure`."""
    if failure is None:
        if type(result) not in _JSON_TYPES:
            body = model_json(result)
            if body is not None:
                data = b'{"jsonrpc":"2.0","id":%s,"result":%s}\n' % (id_json(request_id), body)
                return _within(data, request_id, line_limit, log)
            result = plain(result)
        payload = {"jsonrpc": "2.0", "id": request_id, "result": result}
    elif isinstance(failure, MethodError):
        payload = error_payload(request_id, failure.code, failure.message, failure.data)
    else:
        fields = _validation_fields(failure)
        if fields is not None:
            payload = error_payload(
                request_id,
                codes.INVALID_PARAMS,
                codes.STANDARD_MESSAGES[codes.INVALID_PARAMS],
                {"fields": fields},
            )
        else:
            log.error("handler for %s failed", method, exc_info=failure)
            payload = _internal_error(request_id)
    try:
        data = messages.dumps(payload)
    except (TypeError, ValueError, RecursionError):
        log.exception("could not encode the answer to %s (request %r)", method, request_id)
        return messages.dumps(_internal_error(request_id))
    return _within(data, request_id, line_limit, log)


def _within(data: bytes, request_id: RequestId, line_limit: int, log: logging.Logger) -> bytes:
    if len(data) > line_limit:
        log.error("%s", too_large(data, line_limit))
        return too_large_answer(request_id)
    return data


def id_json(request_id: RequestId | str) -> bytes:
    """A request id (or a method name) as JSON: an int as its digits, text quoted."""
    if type(request_id) is int:
        return b"%d" % request_id
    return json.dumps(request_id).encode()


def batch_line(
    answers: list[bytes],
    line_limit: int,
    log: logging.Logger,
) -> bytes:
    """The answers of one batch as one array line (one -32007 if that is too large)."""
    data = b"[" + b",".join(answer[:-1] for answer in answers) + b"]\n"
    if len(data) > line_limit:
        log.error("%s", too_large(data, line_limit))
        return too_large_answer(None)
    return data


def too_large(data: bytes, line_limit: int, name: str = "") -> MessageTooLargeError:
    prefix = f"{name}: " if name else ""
    return MessageTooLargeError(
        f"{prefix}message of {len(data)} bytes exceeds the {line_limit}-byte line limit"
    )


def too_large_answer(request_id: RequestId | None) -> bytes:
    return messages.dumps(
        error_payload(
            request_id, codes.MESSAGE_TOO_LARGE, codes.DESCRIPTIONS[codes.MESSAGE_TOO_LARGE]
        )
    )


def not_found(method: str) -> MethodError:
    return MethodError(
        codes.METHOD_NOT_FOUND, codes.STANDARD_MESSAGES[codes.METHOD_NOT_FOUND], {"method": method}
    )


def model_json(value: Any) -> bytes | None:
    """A pydantic model's JSON form, written by pydantic itself (its rules: a float that
    is not finite is null); None for anything that is not a model, or a model pydantic
    cannot write (text that is not valid Unicode in a field of any type): `plain` then.

    How a model goes on the wire: one serialization in pydantic-core, where `plain` +
    `messages.dumps` made a dict and then encoded it (three times the CPU for a
    `task.assign`, most of it looking for NaNs in the dict)."""
    main = sys.modules.get("pydantic.main")  # no model exists unless pydantic is loaded
    if main is None or not isinstance(value, main.BaseModel):
        return None
    core = sys.modules["pydantic_core"]
    try:
        data: bytes = value.__pydantic_serializer__.to_json(value)
    except core.PydanticSerializationError:
        return None
    return data


def plain(value: Any) -> Any:
    """A value as `messages.dumps` takes it: a pydantic model (one `model_json` could not
    write) as its JSON-mode dump; everything else as given, but a `dict` subclass as a
    plain `dict` (orjson leaves subclasses to json, 10x slower)."""
    if type(value) in _JSON_TYPES:
        return value
    if isinstance(value, dict):
        return dict(value)
    # No model exists unless pydantic is loaded; the peer never loads it itself.
    main = sys.modules.get("pydantic.main")
    if main is not None and isinstance(value, main.BaseModel):
        return value.model_dump(mode="json")
    return value


def _internal_error(request_id: RequestId | None) -> dict[str, Any]:
    return error_payload(
        request_id, codes.INTERNAL_ERROR, codes.STANDARD_MESSAGES[codes.INTERNAL_ERROR]
    )


def _validation_fields(exc: Exception) -> list[str] | None:
    """The fields a pydantic `ValidationError` names (never its values), else None."""
    core = sys.modules.get("pydantic_core")  # none exists unless pydantic is loaded
    if core is None or not isinstance(exc, core.ValidationError):
        return None
    errors = cast("ValidationError", exc).errors()
    return sorted({".".join(str(p) for p in e["loc"]) or "params" for e in errors})
