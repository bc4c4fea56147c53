"""Process groups: children that die with their parent, and signals to a whole group.

Both the supervisor (agent processes) and the adapter SDK (the CLIs an adapter runs)
start children in their own session; these helpers are what they share: a death signal,
a signal to a group, and waiting for a group's last process to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from functools import cache

_PR_SET_PDEATHSIG = 1


@cache
def death_signal(sig: signal.Signals) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `sig` when its parent dies (Linux);
    None elsewhere. The libc lookup happens here, once per signal, not in the forked child."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    number = int(sig)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, number)

    return preexec


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send `sig` to a process group; a group that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a group, from /proc; [] where there is none."""
    members = []
    try:
        entries = os.scandir("/proc")
    except OSError:
        return []
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    fields = stat.read().rpartition(b")")[2].split()
            except OSError:
                continue
            # After the command: state, ppid, pgrp.
            if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


async def wait_group_exit(pgid: int, timeout: float) -> bool:
    """Wait until every process of the group has exited (each on its pidfd, an event, not a
    poll), at most `timeout` seconds; True if the group is gone. Processes the group starts
    meanwhile are waited for too. Without pidfds (not Linux) it does not wait: False."""
    if not hasattr(os, "pidfd_open"):
        return not group_members(pgid)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while members := group_members(pgid):
        left = deadline - loop.time()
        if left <= 0:
            return False
        waits = [w for pid in members if (w := _exit_of(loop, pid)) is not None]
        if not waits:
            continue  # every one of them exited since the scan: scan again
        try:
            await asyncio.wait(waits, timeout=left)
        finally:
            for wait in waits:
                wait.cancel()
    return True


def _exit_of(loop: asyncio.AbstractEventLoop, pid: int) -> asyncio.Future[None] | None:
    """A future done when `pid` exits (its pidfd turns readable); None if it is gone."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    done: asyncio.Future[None] = loop.create_future()

    def exited() -> None:
        if not done.done():
            done.set_result(None)

    def release(_: object) -> None:
        loop.remove_reader(fd)
        os.close(fd)

    loop.add_reader(fd, exited)
    done.add_done_callback(release)
    return done
