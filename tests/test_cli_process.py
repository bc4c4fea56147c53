"""CliRun: a CLI's JSON events read, garbage skipped, and its whole group killed."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap

import psutil

from aiswitch.adapter_sdk.cli_process import CliRun

STEP_S = 15.0

FAKE_CLI = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    print("not json at all", flush=True)
    print(json.dumps({"type": "start", "pid": os.getpid()}), flush=True)
    print("[1, 2, 3]", flush=True)
    sys.stderr.write("a warning on stderr\\n"); sys.stderr.flush()
    if len(sys.argv) > 1 and sys.argv[1] == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        print(json.dumps({"type": "child", "pid": child.pid}), flush=True)
        time.sleep(600)
    print(json.dumps({"type": "result", "text": sys.stdin.read()}), flush=True)
    sys.exit(3)
    """
)


async def test_events_are_json_objects_and_other_lines_are_skipped() -> None:
    async with asyncio.timeout(STEP_S):
        async with CliRun(
            [sys.executable, "-c", FAKE_CLI], env=os.environ, stdin_data=b"the prompt"
        ) as run:
            events = [event async for event in run.events()]
            code = await run.wait()
    assert [e["type"] for e in events] == ["start", "result"]
    assert events[-1]["text"] == "the prompt"
    assert run.skipped == 2
    assert code == 3
    assert run.last_stderr_line() == "a warning on stderr"


async def test_cancelling_the_task_kills_the_cli_and_everything_it_started() -> None:
    pids: list[int] = []
    started = asyncio.Event()

    async def task() -> None:
        async with CliRun([sys.executable, "-c", FAKE_CLI, "hang"], env=os.environ) as run:
            async for event in run.events():
                pids.append(event["pid"])
                if event["type"] == "child":
                    started.set()

    async with asyncio.timeout(STEP_S):
        running = asyncio.create_task(task())
        await started.wait()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    procs = [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]
    _, alive = psutil.wait_procs(procs, timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert len(pids) == 2
