"""The MCP revisions `aiswitch mcp` serves, and how `mcp_types` models go on the wire.

Contract:
- `PROTOCOL_VERSIONS`: the two newest revisions reached through the `initialize`
  handshake, newest first. `negotiate(asked)` answers the client's revision when it is one
  of them, else the newest (the client then decides whether to go on, as the spec says).
  Revision 2026-07-28 has no handshake (`server/discover` and a stateless envelope); it is
  not served: `server/discover` is answered "method not found", on which the official SDK's
  client falls back to `initialize`.
- `dump(model)`: an `mcp_types` model as its wire JSON (camelCase aliases, no nulls, no
  `resultType`, which only 2026-07-28 defines).
- `mcp_types` (the official MCP schema as pydantic models) is imported here only, when
  the first message needs it, so `aiswitch --version` never pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

# Newest first: the current handshake revision and the one before it.
PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18")
SERVER_NAME = "aiswitch"


def negotiate(asked: str) -> str:
    return asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0]


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"result_type"})
