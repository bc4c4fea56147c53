"""What the ledger and the CLIs' own logs share, for `--source all`: a request aiswitch
drove is in both, and counts once (docs/tokens.md states the rule)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from aiswitch.tokens.rows import R_MESSAGE, R_REQUEST, R_SESSION


class LedgerKeys:
    """What the ledger holds of the CLIs' requests, for `--source all`.

    `requests`: each (message id, request id) of a ledger row, with the session ids it was
    seen with. `sessions`: the session ids of ledger rows that have no ids (a task whose CLI
    log did not account for its usage is recorded as the stream's sums, one row per model):
    such a row stands for every request of its session's task, so the CLI's log rows of that
    session are the ledger's too. (A request made in such a session outside aiswitch, after
    it, is then counted by the ledger's rows only.)"""

    __slots__ = ("requests", "sessions")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], set[str | None]] = {}
        self.sessions: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.requests or self.sessions)


def ledger_keys(ledger: Iterable[tuple[Any, ...]]) -> LedgerKeys:
    """The (message id, request id) pairs of the ledger's rows, with their sessions, and the
    sessions of its rows without ids."""
    known = LedgerKeys()
    requests = known.requests
    for row in ledger:
        if row[R_MESSAGE] and row[R_REQUEST]:
            requests.setdefault((row[R_MESSAGE], row[R_REQUEST]), set()).add(row[R_SESSION])
        elif row[R_SESSION]:
            known.sessions.add(row[R_SESSION])
    return known


def held_by_ledger(row: tuple[Any, ...], known: LedgerKeys) -> bool:
    """Whether a CLI-log row is one the ledger already holds: the same message id and
    request id, and the same session id (or either side has none); or a row of a session
    the ledger holds as sums (`LedgerKeys.sessions`)."""
    session = row[R_SESSION]
    if session is not None and session in known.sessions:
        return True
    if not (row[R_MESSAGE] and row[R_REQUEST]):
        return False
    sessions = known.requests.get((row[R_MESSAGE], row[R_REQUEST]))
    return sessions is not None and (session is None or None in sessions or session in sessions)


def merge_ledger_and_cli(
    ledger: Iterable[tuple[Any, ...]], cli: Iterable[tuple[Any, ...]]
) -> Iterator[tuple[Any, ...]]:
    """The ledger's rows, then the CLI-log rows the ledger does not already hold
    (`held_by_ledger`): what aiswitch drove never counts twice."""
    rows = list(ledger)
    known = ledger_keys(rows)
    yield from rows
    for row in cli:
        if not held_by_ledger(row, known):
            yield row
