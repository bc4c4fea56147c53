"""Forked workers for cold reports: messages, failures and vanished workers, real processes."""

from __future__ import annotations

import gc
import os
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
