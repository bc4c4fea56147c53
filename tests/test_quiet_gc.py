"""`quiet_gc`: the collector held off through a run's start-up comes back on when the run
schedules, and one its caller turned off stays off."""

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
    gc.set_threshold(*threshold)
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


def test_a_start_up_held_collector_comes_back_on_when_the_run_schedules() -> None:
    gc.enable()
    q.hold_until_run()
    assert not gc.isenabled()
    with q.quiet_gc():
        assert gc.isenabled()
        assert gc.get_threshold()[0] >= q.GC_GEN0_THRESHOLD
    assert gc.isenabled()


def test_a_collector_its_caller_turned_off_stays_off() -> None:
    gc.disable()
    q.hold_until_run()
    with q.quiet_gc():
        assert not gc.isenabled()
    assert not gc.isenabled()
