"""Waiting for a whole process group to exit: real processes, in their own session."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import pytest

from aiswitch.process_group import group_members, signal_group, wait_group_exit

pytestmark = pytest.mark.timeout(30)


def start_group(script: str) -> subprocess.Popen[bytes]:
    """`script` in its own session, its stdin a pipe; returns once it printed "ready"."""
    leader = subprocess.Popen(
        ["sh", "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert leader.stdout is not None
    assert leader.stdout.readline() == b"ready\n"
    return leader


async def test_the_wait_ends_when_the_last_process_of_the_group_exits() -> None:
    # Two readers of one pipe, one in the background: both exit on its EOF. (A background
    # command's stdin is /dev/null before its own redirections: it reads the pipe as fd 3.)
    leader = start_group("exec 3<&0; cat <&3 >/dev/null & echo ready; cat >/dev/null; wait")
    try:
        assert len(group_members(leader.pid)) >= 2
        waiting = asyncio.create_task(wait_group_exit(leader.pid, 20))
        await asyncio.sleep(0)
        assert not waiting.done()
        assert leader.stdin is not None
        leader.stdin.close()
        assert await asyncio.wait_for(waiting, 25) is True
        assert group_members(leader.pid) == []
    finally:
        signal_group(leader.pid, signal.SIGKILL)
        leader.wait()


async def test_the_wait_gives_up_after_its_timeout_and_leaves_the_group_running() -> None:
    leader = start_group("echo ready; exec cat >/dev/null")
    try:
        assert await wait_group_exit(leader.pid, 0.05) is False
        assert group_members(leader.pid) == [leader.pid]
    finally:
        signal_group(leader.pid, signal.SIGKILL)
        leader.wait()


async def test_a_group_that_is_gone_is_waited_for_at_once() -> None:
    leader = start_group("echo ready")
    leader.wait()
    assert await asyncio.wait_for(wait_group_exit(leader.pid, 20), 5) is True


async def test_members_that_exit_between_the_scan_and_the_wait_are_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under load a member may exit after /proc was read and before its pidfd is opened.
    from aiswitch import process_group

    gone = subprocess.Popen(["true"])
    gone.wait()
    scans = iter([[gone.pid]])
    monkeypatch.setattr(process_group, "group_members", lambda pgid: next(scans, []))
    assert await asyncio.wait_for(wait_group_exit(gone.pid, 20), 5) is True
