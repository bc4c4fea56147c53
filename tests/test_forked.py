"""Forked workers for cold reports: messages, failures and vanished workers, real processes."""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path
from typing import Any

import pytest

from aiswitch.tokens.sources import forked

pytestmark = pytest.mark.timeout(60)


def _echo_twice(connection: Any, base: int) -> None:
    value = forked.receive(connection)
    forked.send(connection, (base + value, os.getpid(), gc.isenabled()))
    forked.send(connection, b"\x00blob" * 1000)


def _fail(connection: Any) -> None:
    raise ValueError("bad range")


def _vanish(connection: Any) -> None:
    connection.close()


def test_workers_exchange_values_in_order_in_their_own_processes() -> None:
    targets = [(_echo_twice, (10,)), (_echo_twice, (20,))]
    with forked.no_cyclic_gc(), forked.workers(targets) as ends:
        for end, value in zip(ends, (1, 2), strict=True):
            forked.send(end, value)
        answers = [forked.receive(end) for end in ends]
        blobs = [forked.receive(end) for end in ends]
    assert [answer[0] for answer in answers] == [11, 22]
    assert {answer[1] for answer in answers}.isdisjoint({os.getpid()})
    assert [answer[2] for answer in answers] == [False, False]  # the GC setting is inherited
    assert blobs == [b"\x00blob" * 1000] * 2
    assert gc.isenabled()


@pytest.mark.parametrize(
    ("function", "message"), [(_fail, "ValueError: bad range"), (_vanish, "vanished")]
)
def test_a_failed_or_vanished_worker_is_a_workerfailed(function: Any, message: str) -> None:
    with forked.workers([(function, ())]) as ends, pytest.raises(forked.WorkerFailed) as failed:
        forked.receive(ends[0])
    assert message in str(failed.value)


def _wait_for_ever(connection: Any) -> None:
    forked.send(connection, os.getpid())
    forked.receive(connection)  # the parent sends nothing more


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_leaving_the_block_with_an_error_stops_the_workers(error: type[BaseException]) -> None:
    """Ctrl-C or a failure in the parent while workers wait on it: no hang, no worker left."""
    pids: list[int] = []
    with pytest.raises(error), forked.workers([(_wait_for_ever, ())] * 2) as ends:
        pids += [forked.receive(end) for end in ends]
        raise error
    assert len(pids) == 2 and all(_gone(pid) for pid in pids)


def test_a_worker_sees_the_end_of_its_pipe_once_the_parent_closed_it() -> None:
    """No worker keeps the parent's ends open (its own or an earlier worker's): a waiting
    worker fails once the parent closed its end, instead of waiting for ever."""
    with forked.workers([(_wait_for_ever, ()), (_wait_for_ever, ())]) as ends:
        pids = [forked.receive(end) for end in ends]
        for end in ends:
            end.close()
    # Leaving the block without an error only waits: the workers ended by themselves.
    assert all(_gone(pid) for pid in pids)


def _busy(connection: Any) -> None:
    """Not reading its pipe (as a worker parsing): only the death signal can end it."""
    import signal

    forked.send(connection, os.getpid())
    signal.pause()


PARENT_SCRIPT = """
import sys
from tests.test_forked import _busy
from aiswitch.tokens.sources import forked

with forked.workers([(_busy, ())] * 2) as ends:
    print(*[forked.receive(end) for end in ends], flush=True)
    sys.stdin.read()  # until the test kills this process
"""


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    import psutil

    root = Path(__file__).resolve().parent.parent
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    workers: list[psutil.Process] = []
    try:
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        workers = [psutil.Process(pid) for pid in pids]
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert len(pids) == 2 and alive == []
    finally:
        parent.kill()
        parent.wait(timeout=10)
        for worker in workers:  # should the test fail, leave nothing behind
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()
