"""`quiet_gc`: no collection while runs go (the heap of their start frozen), the collector
as it was once the last run ends; one held off through a start-up comes back on then, and
one its caller turned off stays off."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from aiswitch.coordinator import quiet_gc as q


@pytest.fixture(autouse=True)
def collector_as_it_was() -> Iterator[None]:
    enabled, threshold = gc.isenabled(), gc.get_threshold()
    yield
    q._held = False
    q._quiet_runs = 0
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
