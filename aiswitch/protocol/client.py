"""The typed client of the protocol: calls and notifications checked against the table.

Contract:
- `call(METHOD, params)` (or `send`, the same without a coroutine) sends `METHOD.name`
  with `params` (an instance of `METHOD.params`) and returns the reply validated as
  `METHOD.result`. A reply that does not fit raises `InvalidReplyError` naming the
  method and the offending fields (never their values): a malformed reply is the agent's
  fault, so it fails that one call, not the connection. Transport failures are the
  peer's `RpcError`s, unchanged.
- `on(NOTIFICATION, handler)` delivers validated params; a notification that does not fit
  is logged (fields only) and counted in `invalid_notifications`, and never reaches the
  handler or breaks the reader.

This is the only place where a method name meets its models on the parent's side.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from aiswitch.rpc.errors import ProtocolError

if TYPE_CHECKING:
    from aiswitch.protocol.models import MethodSpec, NotificationSpec
    from aiswitch.rpc.peer import Peer

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)

log = logging.getLogger("aiswitch.protocol")


class InvalidReplyError(ProtocolError):
    """A reply that does not fit its method's result model."""

    def __init__(self, method: str, fields: list[str]) -> None:
        where = ", ".join(fields[:5]) or "the reply"
        super().__init__(f"the agent's reply to {method} is not valid ({where})")
        self.method = method
        self.fields = fields


def invalid_fields(exc: ValidationError) -> list[str]:
    """The dotted paths of the fields a validation error names (no values)."""
    return [".".join(str(p) for p in error["loc"]) or "(root)" for error in exc.errors()]


class AgentClient:
    """Typed requests and notifications over one `Peer`."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.invalid_notifications = 0
        # Per method name: its reply's validation, which the peer runs as the reply is read.
        self._checks: dict[str, Callable[[Any], Any]] = {}

    async def call(
        self, method: MethodSpec[P, R], params: P | None = None, *, timeout: float | None
    ) -> R:
        reply = await self.peer.request(method.name, params, timeout=timeout)
        return _validated(method, reply)

    def send(
        self,
        method: MethodSpec[P, R],
        params: P | None = None,
        *,
        timeout: float | None,
        on_reply: Callable[[], None] | None = None,
    ) -> asyncio.Future[R]:
        """`call` without a coroutine or a task: the request goes now, and the future gets
        what `call` returns or raises (the reply is validated as the peer reads it, one
        future per call). Cancelling the future abandons the request. It does not wait for
        the transport to drain (`peer.drain()` does): for the many calls of a batch, each
        bounded by the agent's own capacity.

        `on_reply`: called as the reply is read, right after its validation (whatever
        came of it) and before the future is resolved: a waiter woken by it runs in the
        next loop turn, one turn before a callback on the future would have woken it. Not
        called when no reply comes (the future still ends: timeout, lost connection)."""
        check = self._checks.get(method.name)
        if check is None:
            check = self._checks[method.name] = functools.partial(_validated, method)
        if on_reply is not None:
            check = functools.partial(_then, check, on_reply)
        typed: asyncio.Future[R] = self.peer.send_request(
            method.name, params, timeout=timeout, convert=check
        )
        return typed

    def on(self, notification: NotificationSpec[P], handler: Callable[[P], None]) -> None:
        model = notification.params
        name = notification.name

        def deliver(raw: Any) -> None:
            try:
                params = model.model_validate(raw or {})
            except ValidationError as exc:
                self.invalid_notifications += 1
                log.warning(
                    "%s: invalid %s notification skipped (%s)",
                    self.peer.name,
                    name,
                    ", ".join(invalid_fields(exc)[:5]),
                )
                return
            handler(params)

        self.peer.on_notification(name, deliver)


def _then(check: Callable[[Any], R], on_reply: Callable[[], None], reply: Any) -> R:
    try:
        return check(reply)
    finally:
        on_reply()


def _validated(method: MethodSpec[Any, R], reply: Any) -> R:
    """The reply as the method's result model, or `InvalidReplyError` naming its fields."""
    try:
        return method.result.model_validate(reply)
    except ValidationError as exc:
        raise InvalidReplyError(method.name, invalid_fields(exc)) from None
