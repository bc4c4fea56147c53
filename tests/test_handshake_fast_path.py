"""The adapter handshake without pydantic, held to the protocol models.

`agent.initialize` is answered before any pydantic model is built
(aiswitch/adapter_sdk/wire.py): its params are checked by hand and its reply written
by hand. These tests prove that the hand-made path and the models agree on every input
the fast path accepts, that everything else still goes through the models, and that a
real adapter process answers its handshake with pydantic not even imported.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from aiswitch.adapter_sdk import Adapter
from aiswitch.adapter_sdk.wire import (
    PROTOCOL_VERSION,
    InitializeView,
    initialize_result,
    initialize_view,
)
from aiswitch.protocol import models
from aiswitch.protocol.models import InitializeParams, InitializeResult
from aiswitch.rpc.messages import dumps, request_payload

# Bounds the real-process test: a handshake takes well under a second.
HANDSHAKE_GUARD_S = 30.0
# Enough generated inputs to cover every combination of field kinds many times.
FUZZ_CASES = 4000

# Values of every JSON kind (and a few Python-only ones a caller could pass).
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    7,
    2**70,
    1.0,
    1.5,
    "",
    "7",
    "mock#1",
    [],
    [1],
    {},
    {"k": 1},
    b"bytes",
    (1, 2),
]


def random_params(rng: random.Random) -> Any:
    """An `agent.initialize` params value: mostly plausible, often subtly wrong."""
    if rng.random() < 0.05:
        return rng.choice(ODD_VALUES)
    params: dict[Any, Any] = {}
    for name, good in (
        ("agent_id", lambda: rng.choice(["mock#1", "claude#2", ""])),
        ("parent_pid", lambda: rng.choice([1, 4242, os.getpid(), 2**40])),
        ("protocol_version", lambda: rng.choice([1, 2, 0])),
        ("client", lambda: random_client(rng)),
        ("config", lambda: random_config(rng)),
    ):
        roll = rng.random()
        if roll < 0.7:
            params[name] = good()
        elif roll < 0.85:
            params[name] = rng.choice(ODD_VALUES)
        # else: absent
    if rng.random() < 0.2:
        params["extra_field"] = rng.choice(ODD_VALUES)
    return params


def random_client(rng: random.Random) -> Any:
    client: dict[Any, Any] = {}
    for name in ("name", "version"):
        roll = rng.random()
        if roll < 0.6:
            client[name] = rng.choice(["aiswitch", "0.1.0", ""])
        elif roll < 0.8:
            client[name] = rng.choice(ODD_VALUES)
    if rng.random() < 0.2:
        client["extra"] = 1
    return client if rng.random() < 0.9 else rng.choice(ODD_VALUES)


def random_config(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.7:
        return {"model": "m", "permissions": rng.choice(["edit", None]), "n": [1, {"x": 2}]}
    if roll < 0.8:
        return {1: "int key"}
    return rng.choice(ODD_VALUES)


def model_verdict(params: Any) -> InitializeParams | None:
    try:
        return InitializeParams.model_validate(params or {})
    except Exception:
        return None


def test_the_protocol_version_the_handshake_writes_is_the_models() -> None:
    assert PROTOCOL_VERSION == models.PROTOCOL_VERSION


def test_every_params_the_fast_path_accepts_the_model_accepts_with_the_same_fields() -> None:
    rng = random.Random(20261122)
    accepted = refused = 0
    for _ in range(FUZZ_CASES):
        params = random_params(rng)
        view = initialize_view(params)
        model = model_verdict(params)
        if view is None:
            refused += 1  # the model decides these, as it always did
            continue
        accepted += 1
        assert model is not None, params
        assert view.agent_id == model.agent_id
        assert view.parent_pid == model.parent_pid
        assert view.protocol_version == model.protocol_version
        assert view.config == model.config
        # Anything else comes from the model itself, built on demand.
        assert view.client == model.client
        assert view.model_dump() == model.model_dump()
    assert accepted > FUZZ_CASES // 10 and refused > FUZZ_CASES // 10


def test_a_well_formed_handshake_takes_the_fast_path() -> None:
    params = InitializeParams(agent_id="mock#1", parent_pid=4242).model_dump(mode="json")
    view = initialize_view(params)
    assert isinstance(view, InitializeView)
    assert (view.agent_id, view.parent_pid, view.config) == ("mock#1", 4242, {})


class Plain(Adapter):
    name = "plain"
    version = "2.0"
    max_concurrent_tasks = 3
    supports_resume = True

    def __init__(self, cli: Any = None, **attributes: Any) -> None:
        self._cli = cli
        for key, value in attributes.items():
            setattr(self, key, value)

    def cli_info(self) -> Any:
        return self._cli


@pytest.mark.parametrize(
    ("adapter", "capacity"),
    [
        (Plain(), 3),
        (Plain(cli="fakecli 1.4.2"), 1),
        (Plain(version="", supports_resume=False), 64),
        (Plain(name="ünïcode"), 2),
    ],
)
def test_the_fast_reply_is_exactly_what_the_model_writes(adapter: Adapter, capacity: int) -> None:
    fast = initialize_result(adapter, capacity, 4242)
    model = InitializeResult(
        agent=models.AgentInfo(name=adapter.name, version=adapter.version),
        capabilities=models.Capabilities(
            max_concurrent_tasks=capacity,
            resume=adapter.supports_resume,
            cli=adapter.cli_info(),
        ),
        pid=4242,
    ).model_dump(mode="json")
    assert fast == model
    assert json.loads(dumps(fast)) == model


@pytest.mark.parametrize(
    ("adapter", "capacity"),
    [
        (Plain(name=5), 1),  # not a str: the model refuses it
        (Plain(supports_resume=1), 1),  # lax bool: the model coerces it
        (Plain(), 2.0),  # lax int: the model coerces it
        (Plain(), 0),  # below the model's minimum
    ],
)
def test_a_reply_the_fast_path_cannot_vouch_for_goes_through_the_model(
    adapter: Adapter, capacity: Any
) -> None:
    def through_model() -> Any:
        return InitializeResult(
            agent=models.AgentInfo(name=adapter.name, version=adapter.version),
            capabilities=models.Capabilities(
                max_concurrent_tasks=capacity,
                resume=adapter.supports_resume,
                cli=adapter.cli_info(),
            ),
            pid=4242,
        ).model_dump(mode="json")

    try:
        expected = through_model()
    except Exception as exc:
        with pytest.raises(type(exc)):
            initialize_result(adapter, capacity, 4242)
    else:
        assert initialize_result(adapter, capacity, 4242) == expected


# Runs in a fresh interpreter: the test process has pydantic loaded already.
NO_PYDANTIC_PROBE = textwrap.dedent(
    """
    import asyncio, os, sys
    from aiswitch_adapters.mock import MockAdapter
    from aiswitch.adapter_sdk.server import AdapterServer

    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core"))
    assert not loaded, f"importing the mock loaded {loaded}"

    class Peer:
        def on_request(self, method, handler):
            setattr(self, method.replace(".", "_"), handler)

        on_request_inline = on_request

    async def main():
        server = AdapterServer(MockAdapter(os.environ), Peer())
        reply = await server._initialize({"agent_id": "mock#1", "parent_pid": os.getpid()})
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "pydantic")
        assert not loaded, f"answering agent.initialize loaded {loaded}"
        assert reply["agent"]["name"] == "mock"
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        # Nor after it: the task path needs no model either (tests/test_task_fast_path.py).
        assert "aiswitch.protocol.models" not in sys.modules, "models loaded after"

    asyncio.run(main())
    print("ok")
    """
)


def test_the_mock_answers_its_handshake_without_loading_pydantic() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", NO_PYDANTIC_PROBE],
        capture_output=True,
        text=True,
        timeout=HANDSHAKE_GUARD_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


async def test_a_real_mock_process_replies_to_its_handshake_as_the_model_would() -> None:
    params = InitializeParams(agent_id="mock#1", parent_pid=os.getpid()).model_dump(mode="json")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiswitch_adapters.mock",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=dict(os.environ, MOCK_MAX_CONCURRENT="2"),
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        async with asyncio.timeout(HANDSHAKE_GUARD_S):
            proc.stdin.write(dumps(request_payload(1, "agent.initialize", params)))
            await proc.stdin.drain()
            reply = json.loads(await proc.stdout.readuntil(b"\n"))
    finally:
        proc.stdin.close()
        async with asyncio.timeout(HANDSHAKE_GUARD_S):
            await proc.wait()
    expected = InitializeResult(
        agent=models.AgentInfo(name="mock", version="1"),
        capabilities=models.Capabilities(max_concurrent_tasks=2),
        pid=proc.pid,
    ).model_dump(mode="json")
    assert reply == {"jsonrpc": "2.0", "id": 1, "result": expected}
