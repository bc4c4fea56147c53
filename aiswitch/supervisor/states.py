"""The states of a supervised agent process, and the one function that changes them.

    stopped ──► starting ──► running ──► stopping ──► stopped
                  │   ▲         │
                  ▼   │         ▼
                backoff ◄──── exited        (an exit nobody asked for)
                  │
                  ▼
                fatal                       (start retries spent; the reason is kept)

In the spirit of supervisord's states: `backoff` waits between failed starts (and between
restarts of a flapping process), `fatal` is final until someone starts it again.
`transition()` is the only way a state changes: it refuses a change the table does not
allow (a bug, never a user error) and returns the event to announce.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class ProcessState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    EXITED = "exited"
    FATAL = "fatal"


S = ProcessState

ALLOWED: Final[dict[ProcessState, frozenset[ProcessState]]] = {
    S.STOPPED: frozenset({S.STARTING}),
    S.STARTING: frozenset({S.RUNNING, S.BACKOFF, S.FATAL, S.STOPPING}),
    S.RUNNING: frozenset({S.STOPPING, S.EXITED}),
    S.BACKOFF: frozenset({S.STARTING, S.FATAL, S.STOPPED}),
    S.STOPPING: frozenset({S.STOPPED}),
    S.EXITED: frozenset({S.STARTING, S.BACKOFF, S.FATAL, S.STOPPED}),
    S.FATAL: frozenset({S.STARTING, S.STOPPED}),
}

# States in which the process may be alive (its pid means something).
LIVE: Final = frozenset({S.STARTING, S.RUNNING, S.STOPPING})
# States a handle does not leave by itself.
FINAL: Final = frozenset({S.STOPPED, S.FATAL})


class InvalidTransition(RuntimeError):
    """A state change the table does not allow: a bug in the supervisor."""


@dataclass(frozen=True)
class StateChange:
    """Announced on every change of a process's state."""

    agent_id: str
    old: ProcessState
    new: ProcessState
    reason: str = ""
    pid: int | None = None


def transition(
    agent_id: str, old: ProcessState, new: ProcessState, reason: str = "", pid: int | None = None
) -> StateChange:
    """Check `old → new` against the table; return the change to announce."""
    if new not in ALLOWED[old]:
        raise InvalidTransition(f"{agent_id}: {old} → {new} is not allowed ({reason})")
    return StateChange(agent_id, old, new, reason, pid)
