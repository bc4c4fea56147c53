"""`AgentClient.send(..., on_reply=)`: called as the reply is read, before its future ends
(whatever the reply's validation says), so a waiter it wakes runs a loop turn sooner;
never called when no reply comes (the future still ends)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support.memory_pipe import duplex, peer_on

from aiswitch.protocol.client import AgentClient, InvalidReplyError
from aiswitch.protocol.models import ASSIGN, AssignParams, TaskResult
from aiswitch.rpc.errors import ConnectionClosedError

pytestmark = pytest.mark.timeout(30)

# Bounds a hang only: each reply comes within a few loop turns.
WAIT_S = 10.0


async def _sent(reply: Any) -> tuple[asyncio.Future[TaskResult], list[bool]]:
    left, right = duplex()
    client, adapter = peer_on(left, name="client"), peer_on(right, name="adapter")

    async def assign(params: Any) -> Any:
        return reply

    adapter.on_request(ASSIGN.name, assign)
    client.start()
    adapter.start()
    seen: list[bool] = []
    future: asyncio.Future[TaskResult] | None = None

    def on_reply() -> None:
        assert future is not None
        seen.append(future.done())  # called before the future ends

    future = AgentClient(client).send(
        ASSIGN, AssignParams(task_id="t", prompt="p"), timeout=WAIT_S, on_reply=on_reply
    )
    async with asyncio.timeout(WAIT_S):
        await asyncio.wait({future})
    return future, seen


async def test_on_reply_is_called_before_the_future_of_a_valid_reply_ends() -> None:
    future, seen = await _sent({"task_id": "t", "status": "ok", "output": "done"})
    assert seen == [False]
    assert future.result().output == "done"


async def test_on_reply_is_called_for_a_reply_its_validation_refuses() -> None:
    future, seen = await _sent({"task_id": "t", "status": "not a status"})
    assert seen == [False]
    assert isinstance(future.exception(), InvalidReplyError)


async def test_on_reply_is_not_called_when_no_reply_comes() -> None:
    left, _right = duplex()
    client = peer_on(left, name="client")
    client.start()
    called: list[int] = []
    future = AgentClient(client).send(
        ASSIGN,
        AssignParams(task_id="t", prompt="p"),
        timeout=WAIT_S,
        on_reply=lambda: called.append(1),
    )
    await client.close("gone")
    async with asyncio.timeout(WAIT_S):
        await asyncio.wait({future})
    assert isinstance(future.exception(), ConnectionClosedError)
    assert called == []
