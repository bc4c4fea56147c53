"""Which resource limit a failure ran into, said from inside the child.

The parent applies an agent's `limits:` (config/agents.yaml) to the adapter's process
before it starts (aiswitch.supervisor.rlimits); the CLIs the adapter runs inherit them.
A process that reaches one does not die for most of them: an allocation or a system
call fails (MemoryError / ENOMEM, EMFILE, EAGAIN from fork; RLIMIT_NPROC counts threads
too, so a thread that cannot start, Python's "can't start new thread", is the processes
limit as well). This module turns such a
failure, of the adapter itself (`exception_note`) or of a CLI it ran (`exit_note`), into
the words naming the limit, when that limit is set on this process; None otherwise.
"""

from __future__ import annotations

import errno
import signal

_SETTING = "in config/agents.yaml"
# CPython's RuntimeError when pthread_create fails (EAGAIN: RLIMIT_NPROC counts threads).
_NO_THREAD = "can't start new thread"


def _limit(which: int) -> int | None:
    import resource

    soft, _ = resource.getrlimit(which)
    return None if soft == resource.RLIM_INFINITY else soft


def _note(name: str, which: int, shown: str | None = None) -> str | None:
    value = _limit(which)
    if value is None:
        return None
    if name == "memory":
        shown = f"{value / (1 << 20):g} MiB"
    return f"it reached its {name} limit (limits.{name}: {shown or value} {_SETTING})"


def exception_note(exc: BaseException) -> str | None:
    """The limit behind `exc`, raised in this process, if a set limit explains it."""
    import resource

    code = exc.errno if isinstance(exc, OSError) else None
    if isinstance(exc, MemoryError) or code == errno.ENOMEM:
        return _note("memory", resource.RLIMIT_DATA)
    if code in (errno.EMFILE, errno.ENFILE):
        return _note("open_files", resource.RLIMIT_NOFILE)
    if code == errno.EAGAIN and isinstance(exc, BlockingIOError):
        return _note("processes", resource.RLIMIT_NPROC)
    if isinstance(exc, RuntimeError) and _NO_THREAD in str(exc):
        return _note("processes", resource.RLIMIT_NPROC)
    return None


# What a CLI prints when an allocation, an open or a fork failed (Node, Python, libc).
_SAYS = (
    ("memory", ("out of memory", "enomem", "memoryerror", "cannot allocate memory")),
    ("open_files", ("emfile", "too many open files")),
    ("processes", ("eagain", "resource temporarily unavailable")),
)


def exit_note(code: int, last_line: str) -> str | None:
    """The limit behind a CLI's exit (`code`; negative: the signal) and its last
    stderr line, if a limit set on this process (so on the CLI too) explains it."""
    import resource

    if code < 0 and -code in (signal.SIGXCPU, signal.SIGKILL):
        return _note("cpu_seconds", resource.RLIMIT_CPU)
    said = last_line.lower()
    which = {
        "memory": resource.RLIMIT_DATA,
        "open_files": resource.RLIMIT_NOFILE,
        "processes": resource.RLIMIT_NPROC,
    }
    for name, words in _SAYS:
        if any(word in said for word in words):
            return _note(name, which[name])
    return None
