"""Forked worker processes for cold reports: one pipe each, marshalled messages, failures
reported rather than printed.

Contract:

- `with workers([(function, args), ...]) as ends:` forks one process per pair, where
  `function(connection, *args)` runs with its end of a duplex pipe; `ends` are the parent's
  ends, in the same order. On leaving the block the parent closes its ends and waits for
  every worker; leaving it with an exception (a failure, Ctrl-C) terminates them first.
  Buffered stdout/stderr are flushed before forking, so that no worker writes the parent's
  output again, and each worker closes the parent's ends it inherited. A worker dies with the
  parent (Linux: a death signal), so none outlives a killed report.
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
import os
import signal
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

    from aiswitch.process_group import death_signal

    context = multiprocessing.get_context("fork")
    # A worker dies with the parent (killed, or SIGTERM): none outlives the report.
    die_with_parent = death_signal(signal.SIGKILL)
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    started: list[tuple[Any, Any]] = []
    try:
        for function, args in targets:
            parent_end, child_end = context.Pipe()
            # The child must not keep the parent's ends open (its own and the earlier
            # workers'): a pipe whose other end a worker still holds never reaches its end,
            # and a worker waiting on it would wait for ever once the parent has gone.
            inherited = [parent_end, *(end for _, end in started)]
            process = context.Process(
                target=_run,
                args=(child_end, inherited, (die_with_parent, parent), function, args),
                daemon=True,
            )
            process.start()
            child_end.close()
            started.append((process, parent_end))
        yield [end for _, end in started]
    except BaseException:
        for process, _ in started:  # an error or Ctrl-C in the parent: stop them now
            process.terminate()
        raise
    finally:
        for process, end in started:
            end.close()
            process.join()


def _run(
    connection: Any,
    inherited: list[Any],
    parent: tuple[Callable[[], None] | None, int],
    function: Callable[..., None],
    args: tuple[Any, ...],
) -> None:
    die_with_parent, parent_pid = parent
    if die_with_parent is not None:
        die_with_parent()
        if os.getppid() != parent_pid:  # the parent died before the line above
            os._exit(1)
    for end in inherited:
        end.close()
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
