"""The supervisor against real child processes (the mock adapter), as the OS runs them.

`AgentProcess` (spawn, handshake, stop sequence) is tested alone; whatever is said to a
running child (tasks, cancel, status) goes through `AgentHandle`, as in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from aiswitch.agents import AgentRegistry
from aiswitch.errors import AgentDiedError, AgentStartError
from aiswitch.home import Home
from aiswitch.protocol.models import AssignParams, ProgressParams, UsageParams
from aiswitch.rpc.errors import MessageTooLargeError
from aiswitch.supervisor.handle import AgentHandle
from aiswitch.supervisor.process import AgentProcess

# Generous bounds that only stop a hung test; the happy paths take milliseconds.
STEP_S = 15.0


def mock_env(**env: str) -> dict[str, str]:
    return {**os.environ, "MOCK_LATENCY": "0", "MOCK_STEPS": "1", **env}


def mock_process(home: Home, agent_id: str = "mock#1", **env: str) -> AgentProcess:
    home.ensure()
    agent = AgentRegistry.load(home).get("mock")
    return AgentProcess(agent, agent_id, home=home, run_id="test-run", env=mock_env(**env))


def mock_handle(home: Home, agent_id: str = "mock#1", **env: str) -> AgentHandle:
    home.ensure()
    agent = AgentRegistry.load(home).get("mock")
    return AgentHandle(agent, agent_id, home=home, run_id="test-run", env=mock_env(**env))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_a_mock_child_completes_its_handshake(home: Home) -> None:
    proc = mock_process(home)
    async with asyncio.timeout(STEP_S):
        info = await proc.start()
        code = await proc.stop()
    assert info.agent.name == "mock"
    assert info.pid == proc.pid
    assert code == 0


async def test_a_handle_runs_a_task_with_its_progress_and_usage(home: Home) -> None:
    progress: list[ProgressParams] = []
    usage: list[UsageParams] = []
    handle = mock_handle(home, MOCK_STEPS="2", MOCK_INPUT_TOKENS="7", MOCK_OUTPUT_TOKENS="3")
    handle.on_progress = lambda h, p: progress.append(p)
    handle.on_usage = lambda h, u: usage.append(u)
    async with asyncio.timeout(STEP_S):
        await handle.start()
        result = await handle.assign(AssignParams(task_id="t1", prompt="say hi"))
        await handle.stop()
    assert result.status == "ok"
    assert "say hi" in result.output
    assert [p.text.split(":")[0] for p in progress] == ["step 1/2", "step 2/2"]
    assert sum(u.usage.input_tokens for u in usage) == 7
    assert result.usage.output_tokens == 3
    assert handle.tasks_done == 1


async def test_a_child_that_exits_at_once_fails_its_start_with_the_exit_code(home: Home) -> None:
    proc = mock_process(home, MOCK_EXIT_AT_START="9")
    async with asyncio.timeout(STEP_S):
        with pytest.raises(AgentStartError) as caught:
            await proc.start()
        await proc.stop()
    assert "exited with code 9" in caught.value.message
    assert "exiting at start" in caught.value.message  # the last line of its log


async def test_a_child_that_never_answers_the_handshake_times_out(home: Home) -> None:
    proc = mock_process(home, MOCK_HANDSHAKE_DELAY="inf")
    async with asyncio.timeout(STEP_S):
        with pytest.raises(AgentStartError) as caught:
            await proc.start(handshake_timeout=0.5)
        await proc.stop()
    assert "did not answer agent.initialize within 0.5s" in caught.value.message
    assert proc.pid is not None and gone(proc.pid)


async def test_a_child_that_crashes_mid_task_fails_that_task_with_agent_died(
    home: Home,
) -> None:
    handle = mock_handle(home, MOCK_CRASH_RATE="1", MOCK_CRASH_EXIT_CODE="4")
    async with asyncio.timeout(STEP_S):
        await handle.start()
        with pytest.raises(AgentDiedError) as caught:
            await handle.assign(AssignParams(task_id="t1", prompt="work"))
        await handle.stop()
    assert "exited with code 4" in caught.value.message
    assert not caught.value.hung


async def test_garbage_on_a_childs_stdout_is_logged_and_skipped(home: Home) -> None:
    handle = mock_handle(home, MOCK_GARBAGE="5")
    async with asyncio.timeout(STEP_S):
        await handle.start()
        result = await handle.assign(AssignParams(task_id="t1", prompt="work"))
        # The peer is not part of the handle's interface; the test looks underneath.
        process = handle._process
        await handle.stop()
    assert result.status == "ok"
    assert process is not None and process.peer is not None
    assert process.peer.skipped_lines == 5


async def test_an_oversized_reply_fails_the_task_at_once_instead_of_hanging(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiswitch.rpc import peer as peer_module

    # The child's reply is 2 MiB; the parent's limit is lowered to 1 MiB for the test.
    monkeypatch.setattr(peer_module, "LINE_LIMIT", 1024 * 1024)
    monkeypatch.setattr("aiswitch.supervisor.process.LINE_LIMIT", 1024 * 1024)
    handle = mock_handle(home, MOCK_OVERSIZE_BYTES=str(2 * 1024 * 1024))
    async with asyncio.timeout(STEP_S):
        await handle.start()
        with pytest.raises(MessageTooLargeError) as caught:
            await handle.assign(AssignParams(task_id="t1", prompt="big"))
        follow_up = await handle.status()
        await handle.stop()
    assert "exceeded" in caught.value.message
    assert follow_up.state in ("ready", "busy")  # the reader survived


async def test_stop_escalates_to_sigkill_for_a_child_that_ignores_eof_and_sigterm(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aiswitch.supervisor.process.EXIT_AFTER_EOF_S", 0.3)
    monkeypatch.setattr("aiswitch.supervisor.process.EXIT_AFTER_SIGTERM_S", 0.3)
    proc = mock_process(home, MOCK_IGNORE_EOF="1", MOCK_IGNORE_SIGTERM="1")
    async with asyncio.timeout(STEP_S):
        await proc.start()
        code = await proc.stop()
    assert code == -signal.SIGKILL
    assert proc.pid is not None and gone(proc.pid)


async def test_stop_runs_to_the_end_when_its_caller_is_cancelled(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aiswitch.supervisor.process.EXIT_AFTER_EOF_S", 0.3)
    monkeypatch.setattr("aiswitch.supervisor.process.EXIT_AFTER_SIGTERM_S", 0.3)
    proc = mock_process(home, MOCK_IGNORE_EOF="1", MOCK_IGNORE_SIGTERM="1")
    async with asyncio.timeout(STEP_S):
        await proc.start()
        stopper = asyncio.create_task(proc.stop())
        await asyncio.sleep(0)  # let the stop sequence begin
        stopper.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopper
        # The sequence itself went on: the child is killed all the same.
        assert proc.proc is not None
        code = await proc.proc.wait()
    assert code == -signal.SIGKILL


async def test_an_adapter_exits_by_itself_when_its_stdin_closes(home: Home) -> None:
    proc = mock_process(home)
    async with asyncio.timeout(STEP_S):
        await proc.start()
        assert proc.proc is not None
        proc.proc.close_stdin()
        code = await proc.proc.wait()
        await proc.stop()
    assert code == 0


async def test_a_running_task_is_cancelled_by_task_cancel(home: Home) -> None:
    handle = mock_handle(home, MOCK_HANG="1")
    started = asyncio.Event()
    handle.on_progress = lambda h, p: started.set()
    async with asyncio.timeout(STEP_S):
        await handle.start()
        task = asyncio.create_task(handle.assign(AssignParams(task_id="t1", prompt="hang")))
        await started.wait()
        await handle.cancel("t1")
        result = await task
        await handle.stop()
    assert result.status == "cancelled"


PARENT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from aiswitch.coordinator.coordinator import Coordinator
    from aiswitch.coordinator.request import RunRequest
    from aiswitch.coordinator.specs import parse_specs

    def on_event(event):
        if event.result.status == "running":
            print("running", flush=True)

    async def main():
        c = Coordinator()
        request = RunRequest(mode="parallel", specs=parse_specs("mock,mock"), prompt="x")
        await c.run(request, on_event=on_event)

    asyncio.run(main())
    """
)


def test_no_child_outlives_a_parent_killed_with_sigkill(home: Home, tmp_path: Path) -> None:
    env = {**os.environ, "AISWITCH_HOME": str(home.root), "MOCK_HANG": "1", "MOCK_STEPS": "0"}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        seen = 0
        while seen < 2:  # both children have finished their handshake
            assert parent.stdout.readline().strip() == "running"
            seen += 1
        # Both tasks may share one process of the mock's pool; every child goes.
        table = json.loads((home.state / "agents.json").read_text())["agents"]
        children = psutil.Process(parent.pid).children(recursive=True)
        assert {entry["pid"] for entry in table.values()} <= {c.pid for c in children}
        assert children
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=STEP_S)
        # "A few seconds" is the bound the design promises.
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    finally:
        parent.kill()
        parent.wait()


def test_the_next_invocation_reaps_a_child_whose_parent_died(home: Home) -> None:
    from aiswitch.state.processes import ProcessTable, process_identity
    from aiswitch.state.store import StateStore

    # A child that ignores both EOF and SIGTERM, left behind by a "parent" that exited.
    env = {**os.environ, "MOCK_IGNORE_EOF": "1", "MOCK_IGNORE_SIGTERM": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "aiswitch_adapters.mock"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    dead_parent = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_parent.wait()
    try:
        table = ProcessTable(StateStore(home))
        table.add(
            "old-run/mock#1",
            {
                "pid": child.pid,
                "pgid": child.pid,
                "create_time": process_identity(child.pid),
                "parent_pid": dead_parent.pid,
                "parent_create_time": 1.0,
            },
        )
        assert table.reap_orphans() == ["old-run/mock#1"]
        assert child.wait(timeout=STEP_S) == -signal.SIGKILL
        assert table.entries() == {}
    finally:
        child.kill()
        child.wait()
