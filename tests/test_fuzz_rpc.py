"""Fuzzing the JSON-RPC reader and an adapter's replies (hypothesis, bounded examples).

Whatever arrives — random bytes, truncated or huge lines, wrong types, unknown and
duplicate ids, batches, non-finite numbers — the reader neither raises nor stops: a valid
request sent afterwards is still answered. Whatever an adapter answers to `task.assign`,
the typed client returns a valid `TaskResult` or raises one of its own errors, nothing else,
and its future-returning `send` ends the same way as `call`.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.memory_pipe import duplex, peer_on

from aiswitch.protocol.client import AgentClient, InvalidReplyError
from aiswitch.protocol.models import ASSIGN, AssignParams, TaskResult
from aiswitch.rpc.errors import RpcError

pytestmark = pytest.mark.timeout(300)

# Small, so that "huge" lines are quick to make and oversized-line handling is exercised.
LINE_LIMIT = 2048
EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Each example is a few loop turns; this only stops a hang.
EXAMPLE_TIMEOUT_S = 10.0

ids = st.one_of(st.integers(-3, 3), st.text(max_size=3), st.none(), st.floats(), st.booleans())
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "id": ids,
        "method": st.one_of(st.sampled_from(["echo", "task.assign", "nope", ""]), json_values),
        "params": json_values,
        "result": json_values,
        "error": json_values,
    },
)


def encode(value: Any) -> bytes:
    # Python's json writes NaN/Infinity tokens: not JSON, which is the point here.
    return json.dumps(value, allow_nan=True).encode()


lines = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64).map(str.encode),
    messages.map(encode),
    st.lists(messages, max_size=4).map(encode),  # batches, empty ones too
    messages.map(lambda m: encode(m)[: max(1, len(encode(m)) // 2)]),  # truncated
    st.integers(LINE_LIMIT, LINE_LIMIT * 3).map(lambda n: b'{"id": 1, "x": "' + b"a" * n),
)


async def _reader_survives(chunks: list[bytes]) -> None:
    left, raw = duplex()
    server = peer_on(left, name="server", line_limit=LINE_LIMIT)

    async def echo(params: Any) -> Any:
        return params

    server.on_request("echo", echo)
    server.start()
    try:
        for chunk in chunks:
            raw.write(chunk + b"\n")
        await raw.send_line({"jsonrpc": "2.0", "id": "probe", "method": "echo", "params": [1]})
        async with asyncio.timeout(EXAMPLE_TIMEOUT_S):
            while True:
                reply = await raw.read_message()
                answers = reply if isinstance(reply, list) else [reply]
                if any(isinstance(a, dict) and a.get("id") == "probe" for a in answers):
                    (probe,) = [a for a in answers if a.get("id") == "probe"]
                    assert probe["result"] == [1]
                    break
        assert not server.closed.is_set()
    finally:
        await server.close()


@EXAMPLES
@given(st.lists(lines, max_size=8))
def test_the_reader_survives_anything_and_still_answers(chunks: list[bytes]) -> None:
    asyncio.run(_reader_survives(chunks))


replies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"task_id": st.just("t"), "status": st.sampled_from(["ok", "failed", "weird", 3])},
        optional={
            "output": json_values,
            "error": json_values,
            "usage": st.dictionaries(
                st.sampled_from(["input_tokens", "output_tokens", "cache_read_tokens"]),
                json_values,
                max_size=3,
            ),
            "cost_usd": json_values,
            "duration_s": json_values,
        },
    ),
)


async def _client_types_every_reply(reply: Any) -> None:
    left, right = duplex()
    client = peer_on(left, name="client")
    adapter = peer_on(right, name="adapter")

    async def assign(params: Any) -> Any:
        return reply

    adapter.on_request(ASSIGN.name, assign)
    client.start()
    adapter.start()
    typed = AgentClient(client)
    params = AssignParams(task_id="t", prompt="p")
    try:
        async with asyncio.timeout(EXAMPLE_TIMEOUT_S):
            # `send` (a future, no coroutine) ends exactly as `call` does.
            sent = typed.send(ASSIGN, params, timeout=EXAMPLE_TIMEOUT_S)
            await asyncio.wait({sent})
            try:
                result = await typed.call(ASSIGN, params, timeout=EXAMPLE_TIMEOUT_S)
            except (InvalidReplyError, RpcError) as exc:
                error = sent.exception()
                assert type(error) is type(exc) and str(error) == str(exc)
                raise
            assert sent.result() == result
        assert isinstance(result, TaskResult)
        # Whatever it accepted is something the run file and the ledger can hold.
        assert result.cost_usd is None or math.isfinite(result.cost_usd)
        json.dumps(result.model_dump(mode="json"), allow_nan=False)
    except (InvalidReplyError, RpcError):
        pass  # the typed client's own errors: the task fails, the run goes on
    finally:
        await client.close()
        await adapter.close()


@EXAMPLES
@given(replies)
def test_every_adapter_reply_is_a_valid_result_or_a_typed_error(reply: Any) -> None:
    asyncio.run(_client_types_every_reply(reply))
