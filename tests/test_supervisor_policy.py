"""The restart policy and the process states, as pure functions (no clock, no sleep)."""

from __future__ import annotations

import pytest

from aiswitch.supervisor.policy import (
    Action,
    Exit,
    Restart,
    RestartPolicy,
    after_exit,
    after_start_failure,
    backoff_delay,
)
from aiswitch.supervisor.states import InvalidTransition, ProcessState, transition

S = ProcessState


def test_backoff_doubles_from_the_base_and_stops_at_the_cap() -> None:
    policy = RestartPolicy(backoff_base_s=0.5, backoff_cap_s=3.0)
    assert [backoff_delay(policy, n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_failed_starts_back_off_until_the_retries_are_spent_then_turn_fatal() -> None:
    policy = RestartPolicy(start_retries=2, backoff_base_s=1.0)
    first = after_start_failure(policy, 1, "exited with code 3")
    second = after_start_failure(policy, 2, "exited with code 3")
    third = after_start_failure(policy, 3, "exited with code 3")
    assert (first.action, first.delay_s) == (Action.WAIT, 1.0)
    assert (second.action, second.delay_s) == (Action.WAIT, 2.0)
    assert third.action is Action.FATAL
    assert "exited with code 3" in third.reason and "3 starts" in third.reason


def test_an_exit_during_a_requested_stop_is_never_a_crash() -> None:
    for restart in Restart:
        decision = after_exit(RestartPolicy(restart=restart), Exit(-9, requested=True), [], 0.0)
        assert decision.action is Action.STAY


@pytest.mark.parametrize(
    ("restart", "code", "action"),
    [
        (Restart.ON_FAILURE, 3, Action.START),
        (Restart.ON_FAILURE, -9, Action.START),
        (Restart.ON_FAILURE, 0, Action.STAY),
        (Restart.ALWAYS, 0, Action.START),
        (Restart.NEVER, 3, Action.STAY),
    ],
)
def test_the_restart_setting_decides_which_exits_restart(
    restart: Restart, code: int, action: Action
) -> None:
    assert after_exit(RestartPolicy(restart=restart), Exit(code), [], 100.0).action is action


def test_crashes_beyond_the_budget_within_the_window_are_flapping_and_wait() -> None:
    policy = RestartPolicy(crash_budget=3, crash_window_s=60.0)
    earlier = [10.0, 20.0, 30.0]
    decision = after_exit(policy, Exit(1), earlier, 40.0)
    assert decision.action is Action.WAIT
    assert "flapping" in decision.reason
    # It waits until the oldest crash (t=10) leaves the 60 s window.
    assert decision.delay_s == pytest.approx(30.0)


def test_crashes_that_left_the_window_do_not_count() -> None:
    policy = RestartPolicy(crash_budget=3, crash_window_s=60.0)
    assert after_exit(policy, Exit(1), [0.0, 1.0, 2.0], 100.0).action is Action.START


def test_every_transition_is_checked_against_the_table() -> None:
    change = transition("mock.p1", S.STOPPED, S.STARTING, "start", 42)
    assert (change.old, change.new, change.pid) == (S.STOPPED, S.STARTING, 42)
    with pytest.raises(InvalidTransition):
        transition("mock.p1", S.STOPPED, S.RUNNING)
    with pytest.raises(InvalidTransition):
        transition("mock.p1", S.FATAL, S.RUNNING)
