"""The adapter's task path without pydantic, held to the protocol models.

`task.assign` params are checked by hand, and its `TaskResult` reply and the
`task.progress` and `tokens.usage` notifications written by hand
(aiswitch/adapter_sdk/wire.py). These tests prove that the hand-made path and the
models agree on every input the fast path accepts and write the same bytes, that
everything else still goes through the models, and that a real mock process runs a task
with pydantic not even loaded.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest

from aiswitch.adapter_sdk.wire import (
    COUNTERS,
    MAX_COUNT,
    PERMISSIONS,
    PROGRESS_KINDS,
    SHUTDOWN_RESULT,
    TASK_STATES,
    AssignView,
    LightUsage,
    assign_view,
    light_usage,
    model_usage,
    progress_params,
    shutdown_params_ok,
    task_result,
    usage_params,
)
from aiswitch.protocol.models import (
    AssignParams,
    ProgressParams,
    ShutdownParams,
    ShutdownResult,
    TaskResult,
    TaskState,
    UsageParams,
)
from aiswitch.rpc import messages
from aiswitch.rpc.messages import dumps, notification_payload, request_payload, result_payload
from aiswitch.tokens import usage as usage_module
from aiswitch.tokens.usage import Usage

# Bounds the real-process test: a task of the mock at no latency takes well under that.
PROCESS_GUARD_S = 30.0
FUZZ_CASES = 3000
FIELDS = ("task_id", "prompt", "cwd", "timeout_s", "session_id", "permissions", "options")

ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    7,
    2**70,
    0.0,
    -0.5,
    1.5,
    math.inf,
    math.nan,
    "",
    " ",
    "7",
    "edit",
    [],
    [1],
    {},
    {"k": 1},
    {1: "int key"},
    b"bytes",
    (1, 2),
]


def test_the_constants_are_the_models() -> None:
    assert MAX_COUNT == usage_module.MAX_COUNT
    assert COUNTERS == usage_module.COUNTERS == tuple(Usage.model_fields)
    permissions = get_args(AssignParams.model_fields["permissions"].annotation)[0]
    assert set(get_args(permissions)) == PERMISSIONS
    assert set(get_args(ProgressParams.model_fields["kind"].annotation)) == PROGRESS_KINDS
    assert {state.value for state in TaskState} == TASK_STATES
    assert tuple(AssignParams.model_fields) == FIELDS


# -- task.assign ----------------------------------------------------------------------

GOOD_ASSIGNS: list[dict[str, Any]] = [
    {"task_id": "t1", "prompt": "hi"},
    {"task_id": "", "prompt": " "},
    {"task_id": "t1", "prompt": "hi", "cwd": None, "timeout_s": None, "session_id": None},
    {"task_id": "t1", "prompt": "ünï", "cwd": "/tmp", "session_id": "s-1"},
    {"task_id": "t1", "prompt": "hi", "timeout_s": 30},
    {"task_id": "t1", "prompt": "hi", "timeout_s": 0.001},
    {"task_id": "t1", "prompt": "hi", "timeout_s": math.inf},
    {"task_id": "t1", "prompt": "hi", "permissions": "read-only"},
    {"task_id": "t1", "prompt": "hi", "permissions": "edit"},
    {"task_id": "t1", "prompt": "hi", "permissions": "full"},
    {"task_id": "t1", "prompt": "hi", "options": {"latency": "0", "attempt": 2}},
    {"task_id": "t1", "prompt": "hi", "options": {}, "extra": [1, 2]},
]
BAD_ASSIGNS: list[Any] = [
    None,
    [],
    ["t1", "hi"],
    {},
    {"task_id": "t1"},
    {"prompt": "hi"},
    {"task_id": "t1", "prompt": ""},
    {"task_id": 1, "prompt": "hi"},
    {"task_id": "t1", "prompt": 5},
    {"task_id": "t1", "prompt": "hi", "cwd": 5},
    {"task_id": "t1", "prompt": "hi", "session_id": ["s"]},
    {"task_id": "t1", "prompt": "hi", "timeout_s": 0},
    {"task_id": "t1", "prompt": "hi", "timeout_s": -1.5},
    {"task_id": "t1", "prompt": "hi", "timeout_s": math.nan},
    {"task_id": "t1", "prompt": "hi", "timeout_s": "soon"},
    {"task_id": "t1", "prompt": "hi", "permissions": "root"},
    {"task_id": "t1", "prompt": "hi", "permissions": 1},
    {"task_id": "t1", "prompt": "hi", "options": None},
    {"task_id": "t1", "prompt": "hi", "options": [1]},
    {"task_id": "t1", "prompt": "hi", "options": {1: "int key"}},
]
# Valid, but not in the exact shape the hand check vouches for: the model decides.
UNUSUAL_ASSIGNS: list[dict[str, Any]] = [
    {"task_id": "t1", "prompt": "hi", "timeout_s": "30"},
    {"task_id": "t1", "prompt": "hi", "timeout_s": True},
    {"task_id": "t1", "prompt": "hi", "timeout_s": 2**70},
]


def model_verdict(params: Any) -> AssignParams | None:
    try:
        return AssignParams.model_validate(params or {})
    except Exception:
        return None


def assert_same(view: AssignView, model: AssignParams) -> None:
    for name in FIELDS:
        mine, theirs = getattr(view, name), getattr(model, name)
        assert type(mine) is type(theirs) and mine == theirs, name
    # Anything else comes from the model itself, built on demand.
    assert view.model_dump() == model.model_dump()


@pytest.mark.parametrize("params", GOOD_ASSIGNS)
def test_a_well_formed_assign_takes_the_fast_path_with_the_models_fields(
    params: dict[str, Any],
) -> None:
    view = assign_view(params)
    model = model_verdict(params)
    assert isinstance(view, AssignView) and model is not None
    assert_same(view, model)


@pytest.mark.parametrize("params", BAD_ASSIGNS)
def test_an_assign_the_model_refuses_is_left_to_the_model(params: Any) -> None:
    assert model_verdict(params) is None
    assert assign_view(params) is None


@pytest.mark.parametrize("params", UNUSUAL_ASSIGNS)
def test_an_unusual_but_valid_assign_goes_through_the_model(params: Any) -> None:
    assert model_verdict(params) is not None
    assert assign_view(params) is None


def random_assign(rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return rng.choice(ODD_VALUES)
    params: dict[Any, Any] = {}
    generators: tuple[tuple[str, Callable[[], Any]], ...] = (
        ("task_id", lambda: rng.choice(["t1", "", "task-ü"])),
        ("prompt", lambda: rng.choice(["hi", "x" * 50, ""])),
        ("cwd", lambda: rng.choice(["/tmp", None])),
        ("timeout_s", lambda: rng.choice([None, 1, 0.5, 0, -1, 2**53, 2**53 + 1])),
        ("session_id", lambda: rng.choice(["s-1", None])),
        ("permissions", lambda: rng.choice(["read-only", "edit", "full", "none", None])),
        ("options", lambda: rng.choice([{}, {"latency": "0"}, {"n": [1, {"x": 2}]}])),
    )
    for name, good in generators:
        roll = rng.random()
        if roll < 0.7:
            params[name] = good()
        elif roll < 0.85:
            params[name] = rng.choice(ODD_VALUES)
    if rng.random() < 0.2:
        params["extra_field"] = rng.choice(ODD_VALUES)
    return params


def test_every_assign_the_fast_path_accepts_the_model_accepts_with_the_same_fields() -> None:
    rng = random.Random(20261123)
    accepted = refused = 0
    for _ in range(FUZZ_CASES):
        params = random_assign(rng)
        view = assign_view(params)
        model = model_verdict(params)
        if view is None:
            refused += 1  # the model decides these, as it always did
            continue
        accepted += 1
        assert model is not None, params
        assert_same(view, model)
    assert accepted > FUZZ_CASES // 20 and refused > FUZZ_CASES // 10


# -- usage ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "counts",
    [
        (0, 0, 0, 0, 0),
        (120, 42, 7, 3, 5),
        (usage_module.MAX_COUNT, 0, 0, 0, 0),
    ],
)
def test_a_light_usage_is_the_model_in_every_way_the_sdk_uses_it(counts: tuple[int, ...]) -> None:
    light: Any = light_usage(*counts)
    model = Usage(**dict(zip(usage_module.COUNTERS, counts, strict=True)))
    assert type(light) is LightUsage
    assert light == model and model == light and hash(light) == hash(model)
    assert light.model_dump() == model.model_dump()
    assert light.model_dump(mode="json") == model.model_dump(mode="json")
    assert light.model_dump_json() == model.model_dump_json()
    assert light.total_tokens == model.total_tokens
    assert repr(light) == repr(model)
    one: Any = light_usage(1, 1, 1, 1, 1)
    if counts[0] < usage_module.MAX_COUNT:
        assert light + one == model + Usage(**one.model_dump())
        assert type(light + one) is LightUsage
    assert light + Usage(input_tokens=0) == model
    assert Usage(input_tokens=0) + light_usage(*counts) == model


@pytest.mark.parametrize(
    "counts",
    [
        {"input_tokens": -1},
        {"output_tokens": 2.0},
        {"output_tokens": 2.5},
        {"cache_read_tokens": True},
        {"reasoning_tokens": "3"},
        {"input_tokens": usage_module.MAX_COUNT + 1},
    ],
)
def test_counts_a_light_usage_cannot_vouch_for_go_through_the_model(
    counts: dict[str, Any],
) -> None:
    try:
        expected = Usage(**counts)
    except Exception as exc:
        with pytest.raises(type(exc)):
            light_usage(**counts)
    else:
        got = light_usage(**counts)
        assert type(got) is Usage and got == expected


def test_a_sum_past_the_models_range_fails_as_the_models_sum_does() -> None:
    big = usage_module.MAX_COUNT
    with pytest.raises(Exception) as expected:
        Usage(input_tokens=big) + Usage(input_tokens=1)
    with pytest.raises(expected.type):
        light_usage(big) + light_usage(1)


# -- what the task path writes ---------------------------------------------------------

USAGES: list[Any] = [
    light_usage(),
    light_usage(120, 42, 7, 3, 5),
    Usage(input_tokens=999, output_tokens=22),
]
OUTCOMES: list[dict[str, Any]] = [
    {"status": "ok", "output": "done", "error": None},
    {"status": "ok", "output": "", "error": None, "cost_usd": 0.0152675, "model": "mock-1"},
    {"status": "ok", "output": 'ünï\u2028\n"q"', "error": None, "session_id": "s-1"},
    {"status": "failed", "output": "partial", "error": "mock: simulated failure"},
    {"status": "cancelled", "output": "", "error": "cancelled", "cost_usd": 0.0},
    {"status": "timeout", "output": "", "error": "timed out after 0.5s", "duration_s": 0.5},
    {"status": "ok", "output": "x", "error": None, "cost_usd": 1e-9, "duration_s": 1e-7},
]


def wire(payload: dict[str, Any]) -> list[bytes]:
    """The bytes `payload` goes out as, through json and through orjson."""
    saved = messages._orjson_dumps, messages._orjson_loads
    try:
        messages._orjson_dumps = messages._orjson_loads = None
        by_json = dumps(payload)
        messages.use_orjson()
        return [by_json, dumps(payload)]
    finally:
        messages._orjson_dumps, messages._orjson_loads = saved


@pytest.mark.parametrize("usage", USAGES)
@pytest.mark.parametrize("outcome", OUTCOMES)
def test_the_task_result_is_written_byte_for_byte_as_the_model_writes_it(
    outcome: dict[str, Any], usage: Any
) -> None:
    fields: dict[str, Any] = {
        "task_id": "t-1",
        "cost_usd": None,
        "model": None,
        "session_id": None,
        "duration_s": 0.25,
        **outcome,
        "usage": usage,
    }
    fast = task_result(**fields)
    model = TaskResult(**{**fields, "usage": model_usage(usage)}).model_dump(mode="json")
    assert fast is not None
    assert list(fast) == list(model) and fast == model
    assert wire(result_payload(7, fast)) == wire(result_payload(7, model))


@pytest.mark.parametrize(
    "odd",
    [
        {"cost_usd": 1},  # lax float: the model coerces it
        {"cost_usd": -1.0},  # the model refuses it
        {"cost_usd": math.inf},
        {"output": None},
        {"model": 5},
        {"duration_s": 1},
        {"usage": {"input_tokens": 3}},  # not a Usage: the model decides
        {"status": "lost"},
    ],
)
def test_a_result_the_fast_path_cannot_vouch_for_is_left_to_the_model(
    odd: dict[str, Any],
) -> None:
    fields: dict[str, Any] = {
        "task_id": "t-1",
        "status": "ok",
        "output": "",
        "error": None,
        "usage": light_usage(),
        "cost_usd": None,
        "model": None,
        "session_id": None,
        "duration_s": 0.25,
        **odd,
    }
    assert task_result(**fields) is None


@pytest.mark.parametrize("usage", USAGES)
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"model": "mock-1", "provider": "mock", "cost_usd": 0.5, "session_id": "s-1"},
        {"message_id": "msg-1", "request_id": "req-1", "cost_usd": 0.0},
        {"session_id": "s-1", "requests": 3},  # a task's sums over three requests
    ],
)
def test_a_usage_notification_is_written_byte_for_byte_as_the_model_writes_it(
    usage: Any, extra: dict[str, Any]
) -> None:
    fields: dict[str, Any] = {
        "model": None,
        "provider": None,
        "cost_usd": None,
        "session_id": None,
        "message_id": None,
        "request_id": None,
        **extra,
    }
    fast = usage_params("t-1", usage, **fields)
    model = UsageParams(task_id="t-1", usage=model_usage(usage), **fields)
    expected = model.model_dump(mode="json")
    assert fast is not None and list(fast) == list(expected) and fast == expected
    payload = notification_payload("tokens.usage", fast)
    assert wire(payload) == wire(notification_payload("tokens.usage", expected))
    # Read as the model is read (in-process peers and tests do).
    assert fast.provider == model.provider and fast.usage == model.usage


@pytest.mark.parametrize("kind", ["text", "tool", "status", "thinking"])
@pytest.mark.parametrize("text", ["step 1/3", "", 'ünï \u2028 "q"\n'])
def test_a_progress_notification_is_written_byte_for_byte_as_the_model_writes_it(
    kind: str, text: str
) -> None:
    fast = progress_params("t-1", kind, text)
    expected = ProgressParams(task_id="t-1", kind=kind, text=text).model_dump(mode="json")
    assert fast is not None and list(fast) == list(expected) and fast == expected
    payload = notification_payload("task.progress", fast)
    assert wire(payload) == wire(notification_payload("task.progress", expected))
    assert fast.text == text


def test_notifications_the_fast_path_cannot_vouch_for_are_left_to_the_model() -> None:
    assert progress_params("t-1", "shout", "x") is None
    assert progress_params("t-1", "text", 5) is None  # type: ignore[arg-type]
    bad_usage: Any = {"input_tokens": 1}
    assert usage_params("t-1", bad_usage, None, None, None, None, None, None) is None
    assert usage_params("t-1", light_usage(), None, None, 1, None, None, None) is None
    assert usage_params("t-1", light_usage(), 5, None, None, None, None, None) is None  # type: ignore[arg-type]
    assert usage_params("t-1", light_usage(), None, None, None, None, None, None, 0) is None
    assert usage_params("t-1", light_usage(), None, None, None, None, None, None, True) is None


# -- agent.shutdown ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [None, {}, {"reason": ""}, {"reason": "run ended"}, {"other": 1}, [], [1], {"reason": 5}],
)
def test_shutdown_params_the_fast_path_accepts_the_model_accepts(params: Any) -> None:
    try:
        ShutdownParams.model_validate(params or {})
    except Exception:
        assert not shutdown_params_ok(params)
    # (what the fast path does not vouch for goes to the model, as before)
    assert ShutdownResult().model_dump(mode="json") == SHUTDOWN_RESULT


# Runs in a fresh interpreter: the test process has pydantic loaded already.
WHOLE_LIFE_PROBE = textwrap.dedent(
    """
    import asyncio, os, sys
    from aiswitch_adapters.mock import MockAdapter
    from aiswitch.adapter_sdk.server import AdapterServer

    class Peer:
        sent = []

        def on_request(self, method, handler):
            setattr(self, method.replace(".", "_"), handler)

        on_request_inline = on_request

        async def notify(self, method, params, hold=False):
            self.sent.append(method)

    async def main():
        os.environ.update(MOCK_LATENCY="0", MOCK_STEPS="2", MOCK_USAGE_EVENTS="2")
        peer = Peer()
        server = AdapterServer(MockAdapter(os.environ), peer)
        await server._initialize({"agent_id": "mock#1", "parent_pid": os.getpid()})
        for n in range(3):
            result = await server._assign({"task_id": f"t{n}", "prompt": "hi", "timeout_s": 9})
            assert result["status"] == "ok", result
        assert await server._shutdown({"reason": "done"}) == {"ok": True}
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core"))
        assert not loaded, f"a mock's life loaded {loaded}"
        assert peer.sent.count("tokens.usage") == 6, peer.sent
        assert peer.sent.count("task.progress") == 6, peer.sent

    asyncio.run(main())
    print("ok")
    """
)


def test_a_mocks_whole_life_loads_no_pydantic() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WHOLE_LIFE_PROBE],
        capture_output=True,
        text=True,
        timeout=PROCESS_GUARD_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


# -- a real mock process ---------------------------------------------------------------


def pydantic_mapped(pid: int) -> bool:
    """Whether pydantic-core's extension is loaded in process `pid` (importing pydantic
    loads it; nothing unloads it)."""
    return "pydantic_core" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc/<pid>/maps")
async def test_a_real_mock_runs_a_task_without_loading_pydantic() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiswitch_adapters.mock",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=dict(os.environ, MOCK_LATENCY="0", MOCK_STEPS="1", MOCK_COST_USD="0.25"),
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def call(request_id: int, method: str, params: Any) -> tuple[dict[str, Any], list[Any]]:
        stdin.write(dumps(request_payload(request_id, method, params)))
        await stdin.drain()
        notes: list[Any] = []
        while True:
            message = json.loads(await stdout.readuntil(b"\n"))
            if message.get("id") == request_id:
                return message, notes
            notes.append(message)

    try:
        async with asyncio.timeout(PROCESS_GUARD_S):
            await call(1, "agent.initialize", {"agent_id": "mock#1", "parent_pid": os.getpid()})
            reply, notes = await call(2, "task.assign", {"task_id": "t1", "prompt": "hi there"})
            assert not pydantic_mapped(proc.pid), "a task of the mock loaded pydantic"
            status, _ = await call(9, "task.status", {"task_id": "t1"})
            assert status["result"]["state"] == "ok"

            # What it wrote is what the models write.
            result = reply["result"]
            assert TaskResult.model_validate(result).model_dump(mode="json") == result
            assert result["status"] == "ok" and result["cost_usd"] == 0.25
            assert [n["method"] for n in notes] == ["task.progress", "tokens.usage"]
            progress, usage = (note["params"] for note in notes)
            assert ProgressParams.model_validate(progress).model_dump(mode="json") == progress
            assert UsageParams.model_validate(usage).model_dump(mode="json") == usage

            # A malformed assign is still the model's -32602, naming the field.
            reply, _ = await call(3, "task.assign", {"task_id": "t2", "prompt": ""})
            assert reply["error"]["code"] == -32602 and "prompt" in json.dumps(reply["error"])
            # The check above can see pydantic: the model path has loaded it now.
            assert pydantic_mapped(proc.pid)
    finally:
        stdin.close()
        async with asyncio.timeout(PROCESS_GUARD_S):
            await proc.wait()


class _NoPeer:
    def on_request(self, method: str, handler: Any) -> None:
        pass

    on_request_inline = on_request


def test_the_metrics_usage_is_the_models_sum_of_every_report() -> None:
    from aiswitch.adapter_sdk.adapter import Adapter
    from aiswitch.adapter_sdk.server import AdapterServer
    from aiswitch.tokens.usage import Usage

    server = AdapterServer(Adapter(), _NoPeer())  # type: ignore[arg-type]
    reports = [
        light_usage(3, 4, 5, 6, 1),
        Usage(input_tokens=10, output_tokens=2, reasoning_tokens=1),
        light_usage(1, 0, 0, 0, 0),
    ]
    expected = Usage()
    for usage in reports:
        server.add_metrics_usage(usage)
        expected = expected + usage
        assert server.metrics_usage == expected
    assert server._metrics(None).usage == expected
    server.add_metrics_usage(light_usage(2, 2))
    assert server.metrics_usage == expected + Usage(input_tokens=2, output_tokens=2)
    server.metrics_usage = Usage()  # set outright: the counts not yet summed go too
    server.add_metrics_usage(light_usage(1, 1))
    assert server.metrics_usage == Usage(input_tokens=1, output_tokens=1)
