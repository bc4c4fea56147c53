"""The protocol's common messages without pydantic, held to the models by tests.

Building the protocol's pydantic models costs more than the rest of an adapter's start,
and a task's worth of models more than the rest of its round trip. So the adapter server
(`aiswitch.adapter_sdk.server`) checks well-formed params by hand, with exactly the
models' checks, hands out views with the same fields (`InitializeView`, `AssignView`: any
other attribute builds the model on first use), and writes replies and notifications as
`model_dump(mode="json")` would, whenever every value has its field's exact type; anything
else goes through the models. `LightUsage` stands in for `Usage` the same way.
tests/test_handshake_fast_path.py and tests/test_task_fast_path.py hold every piece here to
its model.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any, cast

from aiswitch.rpc.messages import Params

if TYPE_CHECKING:
    from aiswitch.adapter_sdk.adapter import Adapter
    from aiswitch.protocol.models import AssignParams, InitializeParams
    from aiswitch.tokens.usage import Usage

# aiswitch.protocol.models.PROTOCOL_VERSION, without importing the models for it
# (tests/test_handshake_fast_path.py checks that the two agree).
PROTOCOL_VERSION = 1
# aiswitch.tokens.usage.MAX_COUNT and COUNTERS, likewise (tests/test_task_fast_path.py).
MAX_COUNT = 2**63 - 1
COUNTERS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


class InitializeView:
    """`InitializeParams` without building the model: its fields, checked by
    `initialize_view` exactly as the model checks them. Any other attribute (`client`,
    `model_dump`, …) builds the model on first use and comes from it."""

    __slots__ = ("_model", "_raw", "agent_id", "config", "parent_pid", "protocol_version")

    def __init__(self, raw: dict[str, Any]) -> None:
        self._raw = raw
        self._model: InitializeParams | None = None
        self.protocol_version: int = raw.get("protocol_version", PROTOCOL_VERSION)
        self.agent_id: str = raw["agent_id"]
        self.parent_pid: int = raw["parent_pid"]
        self.config: dict[str, Any] = raw.get("config", {})

    def __getattr__(self, name: str) -> Any:
        model = self._model
        if model is None:
            from aiswitch.protocol.models import InitializeParams

            model = self._model = InitializeParams.model_validate(self._raw)
        return getattr(model, name)

    def __repr__(self) -> str:
        return (
            f"InitializeView(agent_id={self.agent_id!r}, parent_pid={self.parent_pid!r}, "
            f"protocol_version={self.protocol_version!r})"
        )


def initialize_view(params: Params) -> InitializeView | None:
    """A view of well-formed `InitializeParams`, or None to let the model decide.

    Accepts exactly what the model accepts with these exact types (extra keys are
    ignored, as the model ignores them); anything else, valid or not, goes to the
    model, which has the last word."""
    if type(params) is not dict:
        return None
    if type(params.get("agent_id")) is not str or type(params.get("parent_pid")) is not int:
        return None
    if "protocol_version" in params and type(params["protocol_version"]) is not int:
        return None
    if "client" in params:
        client = params["client"]
        if type(client) is not dict or any(
            name in client and type(client[name]) is not str for name in ("name", "version")
        ):
            return None
    if "config" in params:
        config = params["config"]
        if type(config) is not dict or any(type(key) is not str for key in config):
            return None
    return InitializeView(params)


# `ShutdownResult().model_dump(mode="json")` (tests/test_task_fast_path.py).
SHUTDOWN_RESULT: dict[str, Any] = {"ok": True}


def shutdown_params_ok(params: Params) -> bool:
    """Whether `ShutdownParams` would take `params` (no model needed); False lets the
    model decide, as it always did."""
    return params is None or (
        type(params) is dict and ("reason" not in params or type(params["reason"]) is str)
    )


def initialize_result(adapter: Adapter, capacity: int, pid: int) -> dict[str, Any]:
    """The `agent.initialize` reply: what `InitializeResult(...).model_dump(mode="json")`
    gives, built by hand when every value has its field's exact type."""
    name, version, resume = adapter.name, adapter.version, adapter.supports_resume
    cli = adapter.cli_info()
    provides = list(adapter.provides)
    if (
        type(name) is str
        and type(version) is str
        and type(resume) is bool
        and type(capacity) is int
        and capacity >= 1
        and (cli is None or type(cli) is str)
        and type(pid) is int
        and all(type(p) is str for p in provides)
    ):
        return {
            "protocol_version": PROTOCOL_VERSION,
            "agent": {"name": name, "version": version},
            "capabilities": {
                "max_concurrent_tasks": capacity,
                "env_switch": True,
                "resume": resume,
                "cli": cli,
                "provides": provides,
            },
            "pid": pid,
        }
    from aiswitch.protocol.models import AgentInfo, Capabilities, InitializeResult

    result = InitializeResult(
        agent=AgentInfo(name=name, version=version),
        capabilities=Capabilities(
            max_concurrent_tasks=capacity, resume=resume, cli=cli, provides=provides
        ),
        pid=pid,
    )
    return result.model_dump(mode="json")


# -- tasks without pydantic -----------------------------------------------------------

# The literal values of `AssignParams.permissions`, `ProgressParams.kind` and `TaskState`
# (tests/test_task_fast_path.py checks them against the models).
PERMISSIONS = frozenset({"read-only", "edit", "full"})
PROGRESS_KINDS = frozenset({"text", "tool", "status", "thinking", "waiting"})
TASK_STATES = frozenset({"ok", "failed", "cancelled", "timeout"})
# The largest whole number a float holds exactly: a larger `timeout_s` goes to the model.
_EXACT_FLOAT_INT = 2**53


class AssignView:
    """`AssignParams` without building the model: its fields, checked by `assign_view`
    exactly as the model checks them. Any other attribute (`model_dump`, …) builds the
    model on first use and comes from it."""

    __slots__ = (
        "_model",
        "_raw",
        "cwd",
        "options",
        "permissions",
        "prompt",
        "session_id",
        "task_id",
        "timeout_s",
    )

    def __init__(
        self, raw: dict[str, Any], timeout_s: float | None, options: dict[str, Any]
    ) -> None:
        self._raw = raw
        self._model: AssignParams | None = None
        self.task_id: str = raw["task_id"]
        self.prompt: str = raw["prompt"]
        self.cwd: str | None = raw.get("cwd")
        self.timeout_s = timeout_s
        self.session_id: str | None = raw.get("session_id")
        self.permissions: str | None = raw.get("permissions")
        self.options = options

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in AssignView.__slots__:
            raise AttributeError(name)
        model = self._model
        if model is None:
            from aiswitch.protocol.models import AssignParams

            model = self._model = AssignParams.model_validate(self._raw)
        return getattr(model, name)

    def __repr__(self) -> str:
        return f"AssignView(task_id={self.task_id!r}, timeout_s={self.timeout_s!r})"


def assign_view(params: Params) -> AssignView | None:
    """A view of well-formed `AssignParams`, or None to let the model decide.

    Accepts exactly what the model accepts with these exact types (extra keys are
    ignored, as the model ignores them); anything else, valid or not, goes to the
    model, which has the last word (and names the wrong fields in its -32602)."""
    if type(params) is not dict:
        return None
    prompt = params.get("prompt")
    if type(params.get("task_id")) is not str or type(prompt) is not str or not prompt:
        return None
    cwd, session_id = params.get("cwd"), params.get("session_id")
    if (cwd is not None and type(cwd) is not str) or (
        session_id is not None and type(session_id) is not str
    ):
        return None
    timeout = params.get("timeout_s")
    if timeout is not None:
        if type(timeout) is int and 0 < timeout <= _EXACT_FLOAT_INT:
            timeout = float(timeout)  # the model's float
        elif type(timeout) is not float or not timeout > 0:
            return None
    permissions = params.get("permissions")
    if permissions is not None and (type(permissions) is not str or permissions not in PERMISSIONS):
        return None
    if "options" in params:
        options = params["options"]
        if type(options) is not dict or any(type(key) is not str for key in options):
            return None
    else:
        options = {}
    return AssignView(params, timeout, options)


class LightUsage:
    """`Usage` without pydantic: its five counts, whole numbers in the model's range
    (`light_usage` checks them as the model does). It reads, adds, compares and dumps
    as the model does; anything else (`model_dump_json`, `model_copy`, …) builds the
    model on first use and comes from it."""

    __slots__ = (
        "_model",
        "cache_read_tokens",
        "cache_write_tokens",
        "input_tokens",
        "output_tokens",
        "reasoning_tokens",
    )

    def __init__(
        self,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int,
        cache_write_tokens: int,
        reasoning_tokens: int,
    ) -> None:
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cache_read_tokens = cache_read_tokens
        self.cache_write_tokens = cache_write_tokens
        self.reasoning_tokens = reasoning_tokens
        self._model: Usage | None = None

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    @property
    def is_empty(self) -> bool:
        return not any(self.counts())

    def counts(self) -> tuple[int, int, int, int, int]:
        return (
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
        )

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        if kwargs:
            return self.as_model().model_dump(**kwargs)
        return dict(zip(COUNTERS, self.counts(), strict=True))

    def as_model(self) -> Usage:
        model = self._model
        if model is None:
            from aiswitch.tokens.usage import Usage

            model = self._model = Usage(**self.model_dump())
        return model

    def __add__(self, other: object) -> Usage:
        if type(other) is LightUsage:
            return light_usage(*(a + b for a, b in zip(self.counts(), other.counts(), strict=True)))
        return self.as_model() + cast("Usage", other)

    def __eq__(self, other: object) -> bool:
        if type(other) is LightUsage:
            return self.counts() == other.counts()
        return bool(self.as_model() == other)

    def __hash__(self) -> int:
        return hash(self.as_model())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in LightUsage.__slots__:
            raise AttributeError(name)
        return getattr(self.as_model(), name)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.model_dump().items())
        return f"Usage({fields})"


def light_usage(
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> Usage:
    """`Usage(...)` with these counts: a `LightUsage` standing in for the model when each
    is a whole number in the model's range, else the model itself (which coerces or
    refuses them exactly as before). For an adapter whose task path needs no pydantic."""
    if (
        type(input_tokens) is int
        and type(output_tokens) is int
        and type(cache_read_tokens) is int
        and type(cache_write_tokens) is int
        and type(reasoning_tokens) is int
        and 0 <= input_tokens <= MAX_COUNT
        and 0 <= output_tokens <= MAX_COUNT
        and 0 <= cache_read_tokens <= MAX_COUNT
        and 0 <= cache_write_tokens <= MAX_COUNT
        and 0 <= reasoning_tokens <= MAX_COUNT
    ):
        light = LightUsage(
            input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens
        )
        return cast("Usage", light)
    from aiswitch.tokens.usage import Usage

    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        reasoning_tokens=reasoning_tokens,
    )


NO_USAGE: Usage = cast("Usage", LightUsage(0, 0, 0, 0, 0))


def model_usage(usage: Any) -> Any:
    """What a model's `usage` field gets: a `LightUsage` as its model, all else as is."""
    return usage.as_model() if type(usage) is LightUsage else usage


def _usage_dict(usage: object) -> dict[str, Any] | None:
    """`usage` as a model's `usage` field writes it, or None when only the model can say."""
    if type(usage) is LightUsage:
        return usage.model_dump()
    # A real Usage exists only if its module (and pydantic) is loaded already.
    module = sys.modules.get("aiswitch.tokens.usage")
    if module is not None and type(usage) is module.Usage:
        return {name: getattr(usage, name) for name in COUNTERS}
    return None


def _cost(value: object) -> bool:
    """Whether `value` is a `Cost | None` the model would keep as it is."""
    return value is None or (type(value) is float and value >= 0 and math.isfinite(value))


def _text(value: object) -> bool:
    return value is None or type(value) is str


class WireParams(dict[str, Any]):
    """Params written by hand as their model's `model_dump(mode="json")` writes them (on
    the wire they are that dict). Read by attribute, as the model is, they build the model
    first (tests and in-process peers read them so)."""

    __slots__ = ()
    model_name = ""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        from aiswitch.protocol import models

        model = getattr(models, self.model_name).model_validate(dict(self))
        return getattr(model, name)


class ProgressWire(WireParams):
    __slots__ = ()
    model_name = "ProgressParams"


class UsageWire(WireParams):
    __slots__ = ()
    model_name = "UsageParams"


def progress_params(
    task_id: str, kind: str, text: str, usage: Usage | None = None
) -> ProgressWire | None:
    """`ProgressParams(...).model_dump(mode="json")` by hand, or None for the model."""
    counts = None if usage is None else _usage_dict(usage)
    if (
        type(task_id) is str
        and type(text) is str
        and type(kind) is str
        and kind in PROGRESS_KINDS
        and (usage is None or counts is not None)
    ):
        return ProgressWire({"task_id": task_id, "kind": kind, "text": text, "usage": counts})
    return None


def usage_params(
    task_id: str,
    usage: Usage,
    model: str | None,
    provider: str | None,
    cost_usd: float | None,
    session_id: str | None,
    message_id: str | None,
    request_id: str | None,
    requests: int = 1,
) -> UsageWire | None:
    """`UsageParams(...).model_dump(mode="json")` by hand, or None for the model."""
    counts = _usage_dict(usage)
    if (
        counts is None
        or type(task_id) is not str
        or not _cost(cost_usd)
        or type(requests) is not int
        or requests < 1
        or not (
            _text(model)
            and _text(provider)
            and _text(session_id)
            and _text(message_id)
            and _text(request_id)
        )
    ):
        return None
    return UsageWire(
        {
            "task_id": task_id,
            "usage": counts,
            "model": model,
            "provider": provider,
            "cost_usd": cost_usd,
            "session_id": session_id,
            "message_id": message_id,
            "request_id": request_id,
            "requests": requests,
        }
    )


def task_result(
    task_id: str,
    status: str,
    output: str,
    error: str | None,
    usage: Usage,
    cost_usd: float | None,
    model: str | None,
    session_id: str | None,
    duration_s: float,
    provider_status: int | None = None,
) -> dict[str, Any] | None:
    """`TaskResult(...).model_dump(mode="json")` by hand, or None for the model."""
    counts = _usage_dict(usage)
    if (
        counts is None
        or type(task_id) is not str
        or type(status) is not str
        or status not in TASK_STATES
        or type(output) is not str
        or not _cost(cost_usd)
        or not (_text(error) and _text(model) and _text(session_id))
        or type(duration_s) is not float
        or not duration_s >= 0
        or not (provider_status is None or type(provider_status) is int)
    ):
        return None
    return {
        "task_id": task_id,
        "status": status,
        "output": output,
        "error": error,
        "usage": counts,
        "cost_usd": cost_usd,
        "model": model,
        "session_id": session_id,
        "duration_s": duration_s,
        "provider_status": provider_status,
    }
