"""`state/processes` on the path of every run: `process_identity` and `process_usage` read
/proc on Linux instead of importing psutil, and must give exactly psutil's create time, CPU
seconds and RSS (None where psutil finds no live process); `reap_orphans` leaves an empty
table's file alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from aiswitch.home import Home
from aiswitch.state import processes
from aiswitch.state.store import StateStore

linux_proc = pytest.mark.skipif(not processes._LINUX_PROC, reason="reads Linux's /proc")


@linux_proc
def test_every_live_process_has_psutils_create_time() -> None:
    pids = psutil.pids()
    assert pids
    for pid in pids:
        ours, theirs = processes._proc_identity(pid), processes._psutil_identity(pid)
        if ours != theirs and psutil.pid_exists(pid):
            # Only a process that ended (or became a zombie) between the two reads may differ.
            assert processes._proc_identity(pid) == processes._psutil_identity(pid), pid


@linux_proc
def test_a_missing_process_and_a_zombie_have_no_identity() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            os.sched_yield()
        assert processes.process_identity(child.pid) is None
        assert processes._psutil_identity(child.pid) is None
    finally:
        child.wait()
    assert processes.process_identity(child.pid) is None
    assert processes.process_identity(os.getpid()) == psutil.Process().create_time()


def test_reaping_an_empty_table_does_not_rewrite_it_and_a_missing_one_is_created(
    home: Home,
) -> None:
    table = processes.ProcessTable(StateStore(home))
    assert not table.path.exists()
    assert table.reap_orphans() == []
    assert json.loads(table.path.read_text()) == {"version": 1, "agents": {}}
    before = table.path.stat()
    assert table.reap_orphans() == []
    after = table.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_an_entry_of_a_process_that_is_gone_is_still_dropped(home: Home) -> None:
    table = processes.ProcessTable(StateStore(home))
    table.add("gone", {"pid": 2**22 + 1, "create_time": 1.0, "parent_pid": os.getpid()})
    assert table.reap_orphans() == []
    assert table.entries() == {}


@linux_proc
def test_a_live_processs_usage_is_what_psutil_reads() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sum(range(3_000_000)); print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        # The child burns some CPU, says so, then waits on stdin: its figures stay put.
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        ours, theirs = processes._proc_usage(child.pid), processes._psutil_usage(child.pid)
        assert ours is not None and ours == theirs and ours[0] > 0 and ours[1] > 0
        # This process runs on between the two reads: its CPU only grows.
        mine, psutils = processes._proc_usage(os.getpid()), processes._psutil_usage(os.getpid())
        assert mine is not None and psutils is not None and psutils[0] >= mine[0] > 0
    finally:
        child.communicate(b"")
    assert processes.process_usage(child.pid) is None
    assert processes._psutil_usage(child.pid) is None
