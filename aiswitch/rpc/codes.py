"""JSON-RPC error codes: the spec's, and aiswitch's own in -32000..-32099.

docs/protocol.md lists these; a test keeps the doc and this table in step.
"""

from __future__ import annotations

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

UNKNOWN_TASK = -32001
TASK_EXISTS = -32002
AGENT_BUSY = -32003
SHUTTING_DOWN = -32004
ENV_INVALID = -32005
UNKNOWN_SNAPSHOT = -32006
MESSAGE_TOO_LARGE = -32007
CLI_UNAVAILABLE = -32008
UNKNOWN_AGENT = -32009
CONTROL_REFUSED = -32010

DESCRIPTIONS: dict[int, str] = {
    PARSE_ERROR: "The line is not valid JSON.",
    INVALID_REQUEST: "The JSON is not a valid JSON-RPC 2.0 request (also: an empty batch).",
    METHOD_NOT_FOUND: "No handler for the method.",
    INVALID_PARAMS: "The params do not match the method's schema.",
    INTERNAL_ERROR: "The handler failed; details are in the agent's log, never on the wire.",
    UNKNOWN_TASK: "No task with that id is known to the agent.",
    TASK_EXISTS: "A task with that id is already running or finished on this agent.",
    AGENT_BUSY: "The agent is running as many tasks as its `max_concurrent_tasks` allows.",
    SHUTTING_DOWN: "The agent is shutting down and accepts no new work.",
    ENV_INVALID: "An `env.switch` was refused (invalid names or values); nothing changed.",
    UNKNOWN_SNAPSHOT: "No environment snapshot with that id.",
    MESSAGE_TOO_LARGE: "A message exceeded the line-length limit and was discarded.",
    CLI_UNAVAILABLE: "The agent's underlying CLI is missing or too old.",
    UNKNOWN_AGENT: "Run control: no agent process with that id in the run.",
    CONTROL_REFUSED: "Run control: the request was refused (the message says why).",
}

STANDARD_MESSAGES: dict[int, str] = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
}
