"""Switching a live agent's environment: env.switch, env.snapshot, env.rollback."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

import pytest

from aiswitch.agents import AgentRegistry
from aiswitch.coordinator.coordinator import Coordinator
from aiswitch.errors import PresetError
from aiswitch.home import Home
from aiswitch.protocol.models import ENV_SWITCH, AssignParams, EnvSwitchParams
from aiswitch.rpc import codes
from aiswitch.rpc.errors import RemoteError
from aiswitch.supervisor.handle import AgentHandle

STEP_S = 15.0


async def dumped_env(handle: AgentHandle, task_id: str) -> dict[str, str]:
    result = await handle.assign(AssignParams(task_id=task_id, prompt="env"))
    assert result.status == "ok", result.error
    return json.loads(result.output)  # type: ignore[no-any-return]


@pytest.fixture
async def child(home: Home) -> AsyncIterator[AgentHandle]:
    home.ensure()
    agent = AgentRegistry.load(home).get("mock")
    env = {**os.environ, "MOCK_LATENCY": "0", "MOCK_STEPS": "0", "MOCK_DUMP_ENV": "1"}
    handle = AgentHandle(agent, "mock#1", home=home, run_id="r", env=env)
    async with asyncio.timeout(STEP_S):
        await handle.start()
    yield handle
    await handle.stop()


async def test_a_switch_applies_from_the_next_task_and_rollback_restores_it_exactly(
    home: Home, child: AgentHandle
) -> None:
    coordinator = Coordinator(home, parent_env=dict(child.env))
    async with asyncio.timeout(STEP_S):
        before = await dumped_env(child, "t1")
        snapshot = await child.snapshot_env()
        state = await coordinator.switch_preset(child, "slow")
        switched = await dumped_env(child, "t2")
        await child.rollback_env(snapshot)
        restored = await dumped_env(child, "t3")
    assert state.preset == "slow"
    assert switched["AISWITCH_PRESET"] == "slow"
    assert switched["MOCK_LATENCY"] == "2.5-4"
    assert "AISWITCH_PRESET" not in before
    assert restored == before


async def test_an_unknown_preset_is_refused_before_anything_is_sent(
    home: Home, child: AgentHandle
) -> None:
    coordinator = Coordinator(home, parent_env=dict(child.env))
    async with asyncio.timeout(STEP_S):
        before = await dumped_env(child, "t1")
        with pytest.raises(PresetError):
            await coordinator.switch_preset(child, "no-such-preset")
        after = await dumped_env(child, "t2")
    assert after == before


async def test_an_invalid_switch_is_refused_whole_and_changes_nothing(
    child: AgentHandle,
) -> None:
    async with asyncio.timeout(STEP_S):
        before = await dumped_env(child, "t1")
        with pytest.raises(RemoteError) as caught:
            await child._running_client().call(
                ENV_SWITCH,
                EnvSwitchParams(preset="x", set={"GOOD": "1", "BAD-NAME": "2"}),
                timeout=STEP_S,
            )
        after = await dumped_env(child, "t2")
    assert caught.value.code == codes.ENV_INVALID
    assert after == before


async def test_rolling_back_to_an_unknown_snapshot_is_an_error(child: AgentHandle) -> None:
    async with asyncio.timeout(STEP_S):
        with pytest.raises(RemoteError) as caught:
            await child.rollback_env("snap-404")
    assert caught.value.code == codes.UNKNOWN_SNAPSHOT
