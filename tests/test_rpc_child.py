"""`aiswitch.rpc.child.spawn` with real child processes: a peer on a child's stdio.

The children are a few lines of plain Python (no aiswitch import) that speak
newline-delimited JSON-RPC by hand, so each test starts fast and shows real pipe,
EOF and exit behaviour. Every wait is bounded by `asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from aiswitch.rpc.child import Child, spawn
from aiswitch.rpc.errors import ConnectionClosedError

# A child starts and answers within this, even on a loaded machine.
HANG_GUARD_S = 15.0

# Answers each request with its params; with an argument N, exits with code N after
# reading its first line, answering nothing.
ECHO_CHILD = textwrap.dedent(
    """
    import json, sys
    exit_code = int(sys.argv[1]) if len(sys.argv) > 1 else None
    for line in sys.stdin:
        if exit_code is not None:
            sys.exit(exit_code)
        message = json.loads(line)
        reply = {"jsonrpc": "2.0", "id": message["id"], "result": message.get("params")}
        sys.stdout.write(json.dumps(reply) + "\\n")
        sys.stdout.flush()
    """
)
# Writes a notification at once, before anything is asked, then waits for EOF.
EAGER_CHILD = textwrap.dedent(
    """
    import sys
    sys.stdout.write('{"jsonrpc":"2.0","method":"hello","params":{"pid":0}}\\n')
    sys.stdout.flush()
    sys.stdin.read()
    """
)


async def start_child(script: str, *args: str) -> Child:
    return await spawn(
        [sys.executable, "-c", script, *args],
        env=dict(os.environ),
        cwd=None,
        stderr=subprocess.DEVNULL,
        name="test-child",
    )


async def test_a_spawned_child_answers_requests_through_its_peer() -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        child = await start_child(ECHO_CHILD)
        child.peer.start()
        assert child.pid > 0 and child.returncode is None
        assert await child.peer.request("echo", {"n": 1}) == {"n": 1}
        replies = await asyncio.gather(*(child.peer.send_request("echo", [n]) for n in range(50)))
        assert replies == [[n] for n in range(50)]
        child.close_stdin()
        assert await child.wait() == 0
        await child.peer.wait_closed()
    assert child.returncode == 0
    assert child.peer.close_reason == "end of stream"


async def test_a_child_that_exits_ends_its_peer_and_fails_pending_requests() -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        child = await start_child(ECHO_CHILD, "3")
        child.peer.start()
        with pytest.raises(ConnectionClosedError):
            # Far inside the default request timeout: EOF fails it, not its deadline.
            await child.peer.request("echo", {"n": 1}, timeout=None)
        assert await child.wait() == 3
        assert child.peer.closed.is_set()
        with pytest.raises(ConnectionClosedError):
            await child.peer.request("echo")
    assert child.returncode == 3


async def test_what_a_child_writes_before_start_is_handled_at_start() -> None:
    seen: list[Any] = []
    arrived = asyncio.Event()

    def hello(params: Any) -> None:
        seen.append(params)
        arrived.set()

    async with asyncio.timeout(HANG_GUARD_S):
        child = await start_child(EAGER_CHILD)
        # The handler is registered after the spawn, before start(): nothing is lost.
        child.peer.on_notification("hello", hello)
        child.peer.start()
        await arrived.wait()
        child.close_stdin()
        assert await child.wait() == 0
        await child.peer.wait_closed()
    assert seen == [{"pid": 0}]


async def test_a_killed_child_reports_the_signal_as_a_negative_code() -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        child = await start_child(ECHO_CHILD)
        child.peer.start()
        assert await child.peer.request("echo", "up") == "up"
        os.kill(child.pid, signal.SIGKILL)
        assert await child.wait() == -signal.SIGKILL
        await child.peer.wait_closed()


async def test_a_missing_program_raises_oserror() -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        with pytest.raises(FileNotFoundError):
            await spawn(
                ["/nonexistent/aiswitch-no-such-program"],
                env=dict(os.environ),
                cwd=None,
                stderr=subprocess.DEVNULL,
                name="missing",
            )


async def test_a_child_in_a_new_session_leads_its_own_process_group() -> None:
    async with asyncio.timeout(HANG_GUARD_S):
        child = await start_child(ECHO_CHILD)
        child.peer.start()
        try:
            assert os.getpgid(child.pid) == child.pid
        finally:
            child.close_stdin()
            await child.wait()
            await child.peer.wait_closed()


# A child with aiswitch's stdio peer whose handler prints, as a library might, from the
# loop and from another thread, before it answers.
PRINTING_PEER_CHILD = textwrap.dedent(
    """
    import asyncio, threading
    from aiswitch.rpc.stdio import stdio_peer

    async def main():
        peer = await stdio_peer("printing")
        done = asyncio.Event()

        def noisy(params):
            print("a library's notice")
            thread = threading.Thread(target=print, args=("from its thread",))
            thread.start()
            thread.join()
            return {"ok": True}

        peer.on_request_inline("noisy", noisy)
        peer.on_notification("bye", lambda _: done.set())
        peer.start()
        await done.wait()

    asyncio.run(main())
    """
)


async def test_what_a_stdio_peers_process_prints_goes_to_stderr_not_into_the_pipe(
    tmp_path: Any,
) -> None:
    err_path = tmp_path / "stderr.txt"
    async with asyncio.timeout(HANG_GUARD_S):
        with err_path.open("wb") as err:
            child = await spawn(
                [sys.executable, "-c", PRINTING_PEER_CHILD],
                env=dict(os.environ),
                cwd=None,
                stderr=err.fileno(),
                name="test-child",
            )
        child.peer.start()
        # Each answer arrives whole: the prints before it did not land in the pipe.
        assert await child.peer.request("noisy", {}) == {"ok": True}
        assert await child.peer.request("noisy", {}) == {"ok": True}
        await child.peer.notify("bye", {})
        child.close_stdin()
        assert await child.wait() == 0
    assert child.peer.close_reason == "end of stream"
    printed = err_path.read_text()
    assert printed.count("a library's notice\n") == 2
    assert printed.count("from its thread\n") == 2
