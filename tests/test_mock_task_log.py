"""`MOCK_TASK_LOG`: the real mock process appends one whole JSON line at each task's start and
end (task id, attempt, pid, status), so a test can prove that a task ran exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from support.cli import clean_env

from aiswitch.home import Home

# A mock task with no latency ends in milliseconds; this only stops a hung test.
HANG_GUARD_S = 20.0
# The deadline of the task that must time out: it hangs, so any short one does.
SHORT_TIMEOUT_S = 0.2
pytestmark = pytest.mark.timeout(60)


class Mock:
    """A real `python -m aiswitch_adapters.mock` spoken to in raw JSON-RPC lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.replies: dict[int, dict[str, Any]] = {}
        self.next_id = 0

    @classmethod
    async def start(cls, env: dict[str, str], agent_id: str = "mock#1") -> Mock:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aiswitch_adapters.mock",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        mock = cls(proc)
        await mock.call("agent.initialize", {"agent_id": agent_id, "parent_pid": os.getpid()})
        return mock

    async def send(self, method: str, params: dict[str, Any]) -> int:
        assert self.proc.stdin is not None
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        await self.proc.stdin.drain()
        return self.next_id

    async def reply(self, request_id: int) -> dict[str, Any]:
        """The reply to `request_id`; notifications and other replies read meanwhile are kept."""
        assert self.proc.stdout is not None
        while request_id not in self.replies:
            line = await self.proc.stdout.readline()
            assert line, f"the mock exited before replying to request {request_id}"
            message = json.loads(line)
            if "id" in message and "method" not in message:
                self.replies[message["id"]] = message
        return self.replies.pop(request_id)

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        reply = await self.reply(await self.send(method, params))
        assert "result" in reply, reply
        return reply["result"]

    async def stop(self) -> int:
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(HANG_GUARD_S):
                return await self.proc.wait()
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


def assign(task_id: str, **options: Any) -> dict[str, Any]:
    return {"task_id": task_id, "prompt": f"do {task_id}", "options": options}


def read_log(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def end_statuses(lines: list[dict[str, Any]]) -> dict[str, str]:
    return {line["task_id"]: line["status"] for line in lines if line["event"] == "end"}


async def test_the_mock_logs_each_task_start_and_end_with_its_attempt_and_status(
    home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.jsonl"
    mock = await Mock.start(clean_env(home.root, MOCK_TASK_LOG=str(log)))
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            ok = await mock.send("task.assign", assign("t1", attempt=1, attempt_id="t1/a1"))
            failed = await mock.send(
                "task.assign", assign("t2", fail=True, attempt=2, attempt_id="t2/a2")
            )
            hung = await mock.send("task.assign", assign("t3", hang=True))
            late = await mock.send(
                "task.assign", {**assign("t4", hang=True), "timeout_s": SHORT_TIMEOUT_S}
            )
            assert (await mock.reply(ok))["result"]["status"] == "ok"
            assert (await mock.reply(failed))["result"]["status"] == "failed"
            assert (await mock.reply(late))["result"]["status"] == "timeout"
            assert (await mock.call("task.cancel", {"task_id": "t3"}))["cancelled"] is True
            assert (await mock.reply(hung))["result"]["status"] == "cancelled"
    finally:
        assert await mock.stop() == 0
    lines = read_log(log)
    pid = mock.proc.pid
    starts = [line for line in lines if line["event"] == "start"]
    assert sorted(starts, key=lambda line: line["task_id"]) == [
        {"event": "start", "task_id": "t1", "attempt": 1, "attempt_id": "t1/a1", "pid": pid,
         "agent_id": "mock#1"},
        {"event": "start", "task_id": "t2", "attempt": 2, "attempt_id": "t2/a2", "pid": pid,
         "agent_id": "mock#1"},
        {"event": "start", "task_id": "t3", "attempt": None, "attempt_id": None, "pid": pid,
         "agent_id": "mock#1"},
        {"event": "start", "task_id": "t4", "attempt": None, "attempt_id": None, "pid": pid,
         "agent_id": "mock#1"},
    ]  # fmt: skip
    assert [line for line in lines if line["event"] == "end" and line["task_id"] == "t1"] == [
        {"event": "end", "task_id": "t1", "attempt": 1, "attempt_id": "t1/a1", "pid": pid,
         "status": "ok"},
    ]  # fmt: skip
    assert end_statuses(lines) == {"t1": "ok", "t2": "failed", "t3": "cancelled", "t4": "timeout"}
    assert len(lines) == 8  # one start and one end per task, nothing else
    order = [(line["event"], line["task_id"]) for line in lines]
    for task in ("t1", "t2", "t3", "t4"):
        assert order.index(("start", task)) < order.index(("end", task))


async def test_a_crashed_attempt_logs_a_start_but_no_end_and_its_retry_logs_both(
    home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.jsonl"
    env = clean_env(home.root, MOCK_TASK_LOG=str(log), MOCK_CRASH_EXIT_CODE="3")
    first = await Mock.start(env, "mock#1")
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            crashed = await first.send("task.assign", assign("t1", crash=True, attempt=1))
            with pytest.raises(AssertionError, match="exited before replying"):
                await first.reply(crashed)
    finally:
        assert await first.stop() == 3
    second = await Mock.start(env, "mock#2")
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            result = await second.call("task.assign", assign("t1", attempt=2))
            assert result["status"] == "ok"
    finally:
        assert await second.stop() == 0
    assert [(x["event"], x["attempt"], x["pid"]) for x in read_log(log)] == [
        ("start", 1, first.proc.pid),
        ("start", 2, second.proc.pid),
        ("end", 2, second.proc.pid),
    ]


async def test_several_mock_processes_share_one_log_without_interleaving(
    home: Home, tmp_path: Path
) -> None:
    log = tmp_path / "tasks.jsonl"
    per_mock, mocks = 40, 3
    # All of a mock's tasks run at once: the more writers at a time, the better the check.
    env = clean_env(
        home.root, MOCK_TASK_LOG=str(log), MOCK_STEPS="0", MOCK_MAX_CONCURRENT=str(per_mock)
    )
    procs = [await Mock.start(env, f"mock#{m}") for m in range(mocks)]
    try:
        async with asyncio.timeout(HANG_GUARD_S):

            async def run_all(mock: Mock, m: int) -> None:
                ids = [
                    await mock.send("task.assign", assign(f"m{m}-t{n}", attempt=1))
                    for n in range(per_mock)
                ]
                for request_id in ids:
                    reply = await mock.reply(request_id)
                    assert reply.get("result", {}).get("status") == "ok", reply

            await asyncio.gather(*(run_all(mock, m) for m, mock in enumerate(procs)))
    finally:
        codes = [await mock.stop() for mock in procs]
    assert codes == [0] * mocks
    lines = read_log(log)  # every line parses: none was cut into by another process
    assert len(lines) == 2 * per_mock * mocks
    assert set(end_statuses(lines).values()) == {"ok"}
    assert len(end_statuses(lines)) == per_mock * mocks
