"""Forked worker processes for cold reports: one pipe each, marshalled messages, failures
reported rather than printed.

Contract:

- `with workers([(function, args), ...]) as ends:` forks one process per pair, where
  `function(connection, *args)` runs with its end of a duplex pipe; `ends` are the parent's
  ends, in the same order. On leaving the block the parent closes its ends and waits for
  every worker. Buffered stdout/stderr are flushed first, so that no worker writes the
  parent's output again.
- In a worker, an exception (any `BaseException`) ends the worker and is sent to the parent
  as a failure; `receive` then raises `WorkerFailed`, as it does when the worker vanished
  (killed, or its pipe closed). Callers fall back to doing the work in one process.
- `send(connection, value)` / `receive(connection)`: one marshalled value (plain values
  only: tuples, lists, dicts, sets, str, bytes, numbers, None; already marshalled data and
  hash arrays go as bytes, which marshal copies as they are).
- `no_cyclic_gc()`: the cyclic garbage collector off for a block (workers forked inside
  inherit it), back as it was after. Cold reports build millions of acyclic tuples: the
  collector would only spend time walking them.
- Only where `fork` exists (`can_fork()`): start-up and pickling would eat the gain otherwise.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

_OK, _FAILED = "ok", "failed"


class WorkerFailed(Exception):
    """A worker raised, or vanished: the caller does the work in one process."""


def can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


@contextlib.contextmanager
def workers(targets: Sequence[tuple[Callable[..., None], tuple[Any, ...]]]) -> Iterator[list[Any]]:
    """Fork one worker per (function, args); yield the parent's pipe ends (module doc)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    sys.stdout.flush()
    sys.stderr.flush()
    started = []
    try:
        for function, args in targets:
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_run, args=(child_end, function, args), daemon=True)
            process.start()
            child_end.close()
            started.append((process, parent_end))
        yield [end for _, end in started]
    finally:
        for process, end in started:
            end.close()
            process.join()


def _run(connection: Any, function: Callable[..., None], args: tuple[Any, ...]) -> None:
    try:
        function(connection, *args)
    except BaseException as exc:  # reported to the parent, which does the work itself
        with contextlib.suppress(OSError):  # unless the parent is gone
            connection.send_bytes(marshal.dumps((_FAILED, f"{type(exc).__name__}: {exc}")))


def send(connection: Any, value: Any) -> None:
    connection.send_bytes(marshal.dumps((_OK, value)))


def receive(connection: Any) -> Any:
    """The next value a worker sent; `WorkerFailed` if it failed or vanished instead."""
    message = _message(connection)
    try:
        status, value = marshal.loads(message)  # noqa: S302 - our own worker's message
    except (EOFError, ValueError, TypeError) as exc:
        raise WorkerFailed(f"unreadable message from a worker: {exc}") from None
    if status != _OK:
        raise WorkerFailed(str(value))
    return value


def _message(connection: Any) -> bytes:
    try:
        message = connection.recv_bytes()
    except (OSError, EOFError) as exc:
        raise WorkerFailed(f"a worker vanished: {exc or 'end of pipe'}") from None
    if not isinstance(message, bytes):
        raise WorkerFailed("unexpected message from a worker")
    return message


@contextlib.contextmanager
def no_cyclic_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
