"""Typed JSON-RPC failures, all under `aiswitch.errors.AiswitchError`.

    RpcError
    ├── RemoteError            the peer answered with an error object (code, message, data)
    ├── RequestTimeoutError    no reply within the request's timeout
    ├── ConnectionClosedError  the stream ended (EOF, child exit) while requests were pending
    ├── MessageTooLargeError   a message over the line-length limit (sent or received)
    └── ProtocolError          the peer broke the protocol (a malformed reply)

`MethodError` is what a handler raises to answer with a chosen code; its message and
data go on the wire as given, so it must carry no secret. Any other exception in a
handler becomes -32603 "Internal error" with no detail on the wire.
"""

from __future__ import annotations

from typing import Any

from aiswitch.errors import AiswitchError
from aiswitch.rpc import codes


class RpcError(AiswitchError):
    exit_code = 5


class RemoteError(RpcError):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} (JSON-RPC error {code})")
        self.code = code
        self.remote_message = message
        self.data = data


class RequestTimeoutError(RpcError):
    def __init__(self, method: str, timeout: float) -> None:
        super().__init__(f"no reply to {method} within {timeout:g}s")
        self.method = method
        self.timeout = timeout


class ConnectionClosedError(RpcError):
    pass


class MessageTooLargeError(RpcError):
    pass


class ProtocolError(RpcError):
    """The peer broke the protocol (e.g. a malformed reply to a pending request)."""


class MethodError(Exception):
    """Raised by a handler to answer with `code` and `message` (both safe for the wire)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @classmethod
    def invalid_params(cls, message: str) -> MethodError:
        return cls(codes.INVALID_PARAMS, message)
