"""`quiet_gc`: no collection while runs go (the heap of their start frozen), the collector
as it was once the last run ends; one held off through a start-up comes back on then, and
one its caller turned off stays off."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from aiswitch.coordinator import quiet_gc as q


@pytest.fixture(autouse=True)
def collector_as_it_was() -> Iterator[None]:
    enabled, threshold = gc.isenabled(), gc.get_threshold()
    yield
    q._held = False
    q._quiet_runs = 0
    q._disarm()
    gc.set_threshold(*threshold)
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_a_start_up_held_collector_comes_back_on_when_the_run_ends() -> None:
    gc.enable()
    q.hold_until_run()
    assert not gc.isenabled()
    with q.quiet_gc():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_its_caller_turned_off_stays_off() -> None:
    gc.disable()
    q.hold_until_run()
    with q.quiet_gc():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_no_collection_while_runs_go_and_the_start_s_heap_is_frozen_until_the_last_ends() -> None:
    gc.enable()
    gc.unfreeze()
    threshold = gc.get_threshold()
    with q.quiet_gc():
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert not gc.isenabled()
        with q.quiet_gc():  # a second run of the same process, nested
            assert not gc.isenabled()
        # The first run still goes: still quiet, still frozen.
        assert not gc.isenabled()
        assert gc.get_freeze_count() >= frozen
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == threshold


def test_cyclic_garbage_made_during_a_run_is_collected_after_it() -> None:
    gc.enable()

    class Node:
        other: object = None

    with q.quiet_gc():
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        made = [o for o in gc.get_objects() if type(o) is Node]
        assert len(made) == 2  # nothing collected them while the run went
        del made
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o) is Node]


async def test_a_long_quiet_period_still_collects_its_cyclic_garbage_now_and_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host of runs that overlap for hours (`aiswitch mcp`) never ends its quiet period:
    a timer on its loop collects every QUIET_COLLECT_S, and again after that."""
    monkeypatch.setattr(q, "QUIET_COLLECT_S", 0.01)
    loop = asyncio.get_running_loop()
    collected = asyncio.Event()

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            loop.call_soon_threadsafe(collected.set)

    class Node:
        other: object = None

    gc.enable()
    gc.callbacks.append(seen)
    try:
        async with asyncio.timeout(10):
            with q.quiet_gc():
                for _ in range(2):  # each period of the timer collects what it made
                    a, b = Node(), Node()
                    a.other, b.other = b, a
                    gone = weakref.ref(a)
                    del a, b
                    collected.clear()
                    await collected.wait()
                    assert gone() is None
                    assert not gc.isenabled()  # still quiet between collections
            assert q._timer is None  # the last run's end stops the timer
    finally:
        gc.callbacks.remove(seen)
