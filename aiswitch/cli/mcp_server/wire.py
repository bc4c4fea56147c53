"""The MCP revisions `aiswitch mcp` serves, and how `mcp_types` models go on the wire.

Contract:
- `PROTOCOL_VERSIONS`: every revision served, newest first: `2026-07-28` (the current one,
  stateless: `server/discover` and a protocol version in each request's `_meta`) and
  `2025-11-25` and `2025-06-18` (reached through the `initialize` handshake).
- `negotiate(asked)`: the `initialize` answer: the client's revision when it is a
  handshake one served, else the newest handshake one (the client then decides whether to
  go on, as the spec says).
- `envelope_version(params)`: the revision a request's `_meta` names under
  `io.modelcontextprotocol/protocolVersion`, or None for a request without one (a
  handshake-era request). As the official SDK's inbound ladder: a `_meta` naming a
  version but no client capabilities, or a version that is not a string, is -32602; a
  version not served this way is -32022 with `{"supported": [...], "requested": ...}`.
- `discover(params)`: the `server/discover` answer (the 2026-07-28 revisions served, the
  tools capability, the instructions); without an envelope -32602. `ping(params)`: `{}`,
  but -32601 in 2026-07-28, which has no ping.
- `caller_of(params)`: `name/version` of the `clientInfo` a 2026-07-28 request carries.
- `shape(method, version, model)`: a result as its wire JSON for the request's revision:
  the handshake-era form (camelCase aliases, no nulls, no `resultType`) when `version` is
  None; else the revision's own schema (`mcp_types.methods.serialize_server_result`, which
  fills `resultType` and the cache fields) with the server's identity stamped in `_meta`.
- `mcp_types` (the official MCP schema as pydantic models) is imported here only, when
  the first message needs it, so `aiswitch --version` never pays for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiswitch.rpc import codes
from aiswitch.rpc.errors import MethodError

if TYPE_CHECKING:
    from pydantic import BaseModel

# Revisions whose requests carry their version in `_meta` (no handshake).
ENVELOPE_VERSIONS = ("2026-07-28",)
# Revisions reached through `initialize`, newest first.
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18")
PROTOCOL_VERSIONS = (*ENVELOPE_VERSIONS, *HANDSHAKE_VERSIONS)
SERVER_NAME = "aiswitch"
INSTRUCTIONS = (
    "Delegate coding tasks to other agent CLIs (codex, claude, gemini, with provider "
    "presets) with `run`; several agents work in parallel in their own worktrees; "
    "`compare`, `diff` and `apply` pick the best attempt."
)


def negotiate(asked: str) -> str:
    return asked if asked in HANDSHAKE_VERSIONS else HANDSHAKE_VERSIONS[0]


def _meta(params: Any) -> dict[str, Any] | None:
    meta = params.get("_meta") if isinstance(params, dict) else None
    return meta if isinstance(meta, dict) else None


def envelope_version(params: Any) -> str | None:
    import mcp_types

    meta = _meta(params)
    if meta is None or mcp_types.PROTOCOL_VERSION_META_KEY not in meta:
        return None
    if mcp_types.CLIENT_CAPABILITIES_META_KEY not in meta:
        raise MethodError(
            codes.INVALID_PARAMS,
            "params._meta is missing the required envelope key(s): "
            + mcp_types.CLIENT_CAPABILITIES_META_KEY,
        )
    version = meta[mcp_types.PROTOCOL_VERSION_META_KEY]
    if not isinstance(version, str):
        raise MethodError(
            codes.INVALID_PARAMS, "the protocol-version envelope value must be a string"
        )
    if version not in ENVELOPE_VERSIONS:
        data = mcp_types.UnsupportedProtocolVersionErrorData(
            supported=list(ENVELOPE_VERSIONS), requested=version
        )
        raise MethodError(
            mcp_types.UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            data.model_dump(mode="json", by_alias=True),
        )
    return version


def caller_of(params: Any) -> str | None:
    import mcp_types

    meta = _meta(params)
    info = None if meta is None else meta.get(mcp_types.CLIENT_INFO_META_KEY)
    try:
        client = mcp_types.Implementation.model_validate(info)
    except ValueError:
        return None
    return f"{client.name}/{client.version}"


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"result_type"})


def shape(method: str, version: str | None, model: BaseModel) -> dict[str, Any]:
    if version is None:
        return dump(model)
    import mcp_types
    from mcp_types.methods import serialize_server_result

    from aiswitch import __version__

    data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    result = serialize_server_result(method, version, data)
    identity = {"name": SERVER_NAME, "version": __version__}
    result["_meta"] = {**result.get("_meta", {}), mcp_types.SERVER_INFO_META_KEY: identity}
    return result


def discover(params: Any) -> dict[str, Any]:
    import mcp_types

    version = envelope_version(params)
    if version is None:
        raise MethodError(
            codes.INVALID_PARAMS,
            "server/discover needs params._meta naming the protocol version "
            f"({', '.join(ENVELOPE_VERSIONS)}) and the client's capabilities",
        )
    return shape(
        "server/discover",
        version,
        mcp_types.DiscoverResult(
            supported_versions=list(ENVELOPE_VERSIONS),
            capabilities=mcp_types.ServerCapabilities(tools=mcp_types.ToolsCapability()),
            instructions=INSTRUCTIONS,
        ),
    )


def ping(params: Any) -> dict[str, Any]:
    if envelope_version(params) is not None:
        raise MethodError(codes.METHOD_NOT_FOUND, "Method not found: ping (removed in 2026-07-28)")
    return {}
