"""The pending-call table alone (aiswitch/rpc/pending.py)."""

from __future__ import annotations

import asyncio

import pytest

from aiswitch.rpc.errors import ConnectionClosedError, RequestTimeoutError
from aiswitch.rpc.pending import PendingCalls

HANG_GUARD_S = 5.0


async def test_ids_count_up_and_a_result_resolves_its_request_once() -> None:
    calls = PendingCalls()
    first, second = calls.new_id(), calls.new_id()
    assert (first, second) == (1, 2)
    future = calls.add(first, "echo", None)
    assert first in calls and len(calls) == 1
    assert calls.resolve(first, "done")
    assert await future == "done"
    assert not calls.resolve(first, "again")  # a late or duplicate reply: unknown id
    assert len(calls) == 0


async def test_a_request_past_its_deadline_fails_and_is_forgotten() -> None:
    calls = PendingCalls()
    request_id = calls.new_id()
    future = calls.add(request_id, "slow", 0.02)
    async with asyncio.timeout(HANG_GUARD_S):
        with pytest.raises(RequestTimeoutError) as caught:
            await future
    assert caught.value.method == "slow"
    assert len(calls) == 0 and calls.timed == 0
    assert not calls.resolve(request_id, "late")


async def test_a_suspended_deadline_does_not_run_until_restarted() -> None:
    calls = PendingCalls()
    request_id = calls.new_id()
    future = calls.add(request_id, "m", 0.02)
    calls.suspend_deadline(request_id)
    assert calls.timed == 0
    await asyncio.sleep(0.05)  # past the deadline it would have had: the point of the test
    assert not future.done()
    calls.restart_deadline(request_id, 0.02)
    async with asyncio.timeout(HANG_GUARD_S):
        with pytest.raises(RequestTimeoutError):
            await future


async def test_fail_all_fails_every_request_with_its_method_and_stops_the_timers() -> None:
    calls = PendingCalls()
    futures = [calls.add(calls.new_id(), f"m{n}", 30.0) for n in range(3)]
    calls.fail_all(lambda method: ConnectionClosedError(f"gone before {method}"))
    for n, future in enumerate(futures):
        with pytest.raises(ConnectionClosedError, match=f"before m{n}"):
            await future
    assert len(calls) == 0 and calls.timed == 0


async def test_a_request_its_caller_cancelled_is_left_alone() -> None:
    calls = PendingCalls()
    request_id = calls.new_id()
    future = calls.add(request_id, "m", None)
    future.cancel()
    assert calls.fail(request_id, lambda method: ConnectionClosedError(method))
    assert future.cancelled()


async def test_a_converted_request_gets_what_its_converter_makes_or_raises() -> None:
    calls = PendingCalls()
    typed = calls.add(calls.new_id(), "typed", 5.0, convert=lambda raw: {"n": raw["n"] * 2})
    broken = calls.add(calls.new_id(), "typed", None, convert=lambda raw: raw["missing"])
    abandoned = calls.add(calls.new_id(), "typed", None, convert=lambda raw: 1 / 0)
    abandoned.cancel()
    assert calls.resolve(1, {"n": 21}) and calls.resolve(2, {"n": 1})
    assert calls.resolve(3, {"n": 1})  # known, answered: the cancelled future stays so
    assert await typed == {"n": 42}
    with pytest.raises(KeyError):
        await broken
    assert abandoned.cancelled()
    assert len(calls) == 0 and calls.timed == 0
    # A converted request that times out or loses its stream fails as any other.
    late = calls.add(calls.new_id(), "typed", None, convert=str)
    calls.fail_all(lambda method: ConnectionClosedError(method))
    with pytest.raises(ConnectionClosedError):
        await late
