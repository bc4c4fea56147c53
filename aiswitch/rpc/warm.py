"""Warm interpreters: agent children started before their agent is known.

Most of an adapter's start is its interpreter's (Python, asyncio, the adapter SDK: about
60 ms of a one-agent `aiswitch run`). `start(count)` starts that many interpreters of
`aiswitch.adapter_sdk.warm` at once, so they load while this process loads its own
modules and reads its configuration; `child.spawn` then gives one the spec of the child
it is to become (`warm_child.become`) instead of starting a new process. What becomes of it is the
child `spawn` would have started, but for its `/proc/PID/cmdline` and `environ`, which
show the interpreter's start (see below).

Contract:
- Linux only (the exit is awaited on a pidfd): elsewhere `start` starts nothing and
  `spawn` starts every child the ordinary way.
- A warm interpreter starts in a new session, stdin and stdout as pipes, stderr to
  /dev/null, with an environment of this process's locale (`LANG`, `LANGUAGE`, `LC_*`),
  `HOME` and `AISWITCH_HOME` only (so a test or `ps` finds it by its home as it finds
  any agent). It sets SIGTERM as its own death signal (and exits if this process is
  already gone).
- `warm_child.become` takes one only for a child that it could have been: `argv` is this very
  interpreter with `-m MODULE`, in a new session, SIGTERM at this process's death, a
  stderr that is a descriptor or DEVNULL, and the variables an interpreter reads as it
  starts (`startup_variables`) the same in the child's environment as in the warm one's.
  Otherwise, or when the interpreter died or cannot apply the spec, it returns None and
  the caller starts the child the ordinary way: no error of a warm interpreter reaches
  the user.
- The child it returns is a `asyncio.SubprocessTransport` whose protocol gets the calls
  `loop.subprocess_exec` would make: `connection_made` once the child has taken its
  spec, then pipe data, pipe and process ends; its exit is awaited, never polled.
- An interpreter nobody takes is killed and reaped by `close_unused()` (the run's end);
  when this process exits or dies first, it exits at its stdin's EOF, or by its death
  signal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

MODULE = "aiswitch.adapter_sdk.warm"
# How long a warm interpreter may take to finish loading and take its spec.
BECOME_TIMEOUT_S = 10.0
# What an interpreter reads from its environment as it starts, and cannot read again.
_STARTUP_NAMES = frozenset({"LANG", "LANGUAGE", "HOME"})
_STARTUP_PREFIXES = ("PYTHON", "LC_", "LD_", "MALLOC_", "GLIBC_")
# What a warm interpreter starts with: the locale, HOME, and the home it serves.
_WARM_NAMES = ("LANG", "LANGUAGE", "HOME", "AISWITCH_HOME")

# The interpreters started and not taken yet, each with the environment it started with.
_waiting: list[tuple[subprocess.Popen[bytes], dict[str, str]]] = []


def startup_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of `env` an interpreter reads as it starts."""
    return {
        name: value
        for name, value in env.items()
        if name in _STARTUP_NAMES or name.startswith(_STARTUP_PREFIXES)
    }


def _warm_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name in _WARM_NAMES or name.startswith("LC_")
    }


def start(count: int) -> None:
    """Start `count` warm interpreters (module contract)."""
    if not hasattr(os, "pidfd_open") or not sys.platform.startswith("linux"):
        return
    env = _warm_environment()
    for _ in range(count):
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", MODULE, str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                bufsize=0,
                start_new_session=True,
            )
        except OSError:
            return
        _waiting.append((popen, startup_variables(env)))


def close_unused() -> None:
    """Kill the interpreters nobody took and reap them: they hold nothing, and one still
    loading would answer its stdin's EOF only once loaded."""
    while _waiting:
        popen, _ = _waiting.pop()
        popen.kill()
        popen.wait()
        for pipe in (popen.stdin, popen.stdout):
            if pipe is not None:
                pipe.close()


def waiting() -> bool:
    """Whether any warm interpreter waits to be taken."""
    return bool(_waiting)


def take(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes] | None:
    if len(argv) < 3 or argv[0] != sys.executable or argv[1] != "-m":
        return None
    wanted = startup_variables(env)
    for entry in _waiting:
        popen, started_with = entry
        if popen.poll() is None and started_with == wanted:
            _waiting.remove(entry)
            return popen
    return None
