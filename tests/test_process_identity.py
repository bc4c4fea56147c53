"""`process_identity` reads /proc on Linux instead of importing psutil (start-up cost); it
must give exactly psutil's create time, and None where psutil finds no live process."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from aiswitch.state import processes

pytestmark = pytest.mark.skipif(not processes._LINUX_PROC, reason="reads Linux's /proc")


def test_every_live_process_has_psutils_create_time() -> None:
    pids = psutil.pids()
    assert pids
    for pid in pids:
        ours, theirs = processes._proc_identity(pid), processes._psutil_identity(pid)
        if ours != theirs and psutil.pid_exists(pid):
            # Only a process that ended (or became a zombie) between the two reads may differ.
            assert processes._proc_identity(pid) == processes._psutil_identity(pid), pid


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
