"""The restart policy: a pure function of what happened, how often, and the clock.

No sleeping and no clock of its own: callers pass `now` (their injected clock), so the
tests walk through hours of restarts in microseconds.

- A failed start (spawn error, early exit, no handshake in time) is retried after a
  capped exponential backoff; after `start_retries` failed starts in a row the process is
  `fatal`, with the last reason.
- An exit nobody asked for is a crash when `restart` says so (`on-failure`: a non-zero
  code or a signal; `always`: any exit); `never` leaves the process exited. A crash is
  restarted at once, unless the crash budget is spent: more than `crash_budget` crashes
  within `crash_window_s` is flapping, and the process waits (backoff) until the oldest
  of them leaves the window.
- An exit during a requested stop is never a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from aiswitch.supervisor.limits import (
    DEFAULT_BACKOFF_BASE_S,
    DEFAULT_BACKOFF_CAP_S,
    DEFAULT_CRASH_BUDGET,
    DEFAULT_CRASH_WINDOW_S,
    DEFAULT_HEARTBEAT_INTERVAL_S,
    DEFAULT_HEARTBEAT_TIMEOUT_S,
    DEFAULT_START_RETRIES,
    DEFAULT_START_TIMEOUT_S,
)


class Restart(StrEnum):
    ON_FAILURE = "on-failure"
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True)
class RestartPolicy:
    restart: Restart = Restart.ON_FAILURE
    start_retries: int = DEFAULT_START_RETRIES
    backoff_base_s: float = DEFAULT_BACKOFF_BASE_S
    backoff_cap_s: float = DEFAULT_BACKOFF_CAP_S
    crash_budget: int = DEFAULT_CRASH_BUDGET
    crash_window_s: float = DEFAULT_CRASH_WINDOW_S


class Action(StrEnum):
    START = "start"  # start now
    WAIT = "wait"  # back off `delay_s`, then start
    FATAL = "fatal"  # give up, with `reason`
    STAY = "stay"  # stay exited (no restart wanted)


@dataclass(frozen=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class Exit:
    """How a process ended: its code (negative: killed by that signal), whether a stop
    was asked for, and why it ended if the supervisor knows better (a missed heartbeat)."""

    code: int | None
    requested: bool = False
    reason: str = ""


def backoff_delay(policy: RestartPolicy, failures: int) -> float:
    """The wait before start number `failures + 1` after `failures` failed ones."""
    return float(min(policy.backoff_cap_s, policy.backoff_base_s * 2 ** max(0, failures - 1)))


def after_start_failure(policy: RestartPolicy, failures: int, reason: str) -> Decision:
    """`failures` failed starts in a row, the last one for `reason`."""
    if failures > policy.start_retries:
        return Decision(Action.FATAL, reason=f"{reason} (gave up after {failures} starts)")
    return Decision(Action.WAIT, backoff_delay(policy, failures), reason)


def is_crash(policy: RestartPolicy, exit: Exit) -> bool:
    if exit.requested or policy.restart is Restart.NEVER:
        return False
    return policy.restart is Restart.ALWAYS or exit.code != 0


def after_exit(policy: RestartPolicy, exit: Exit, crashes: Sequence[float], now: float) -> Decision:
    """What to do after `exit`; `crashes` are the times of earlier crashes (any order)."""
    if not is_crash(policy, exit):
        return Decision(Action.STAY, reason=exit.reason or "exited")
    recent = sorted(t for t in crashes if now - t < policy.crash_window_s)
    recent.append(now)
    if len(recent) > policy.crash_budget:
        # Flapping: wait until enough of the crashes leave the window.
        oldest = recent[len(recent) - policy.crash_budget - 1]
        delay = max(0.0, oldest + policy.crash_window_s - now)
        return Decision(
            Action.WAIT,
            delay,
            f"flapping: {len(recent)} crashes within {policy.crash_window_s:g}s",
        )
    return Decision(Action.START, reason=exit.reason or f"exited with code {exit.code}")


@dataclass(frozen=True)
class Supervision:
    """How a handle keeps its process alive (from the agent's definition)."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S
    heartbeat_interval_s: float | None = DEFAULT_HEARTBEAT_INTERVAL_S
    heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S
