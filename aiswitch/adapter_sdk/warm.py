"""A warm interpreter: a Python started before its agent is known, that becomes that agent.

`aiswitch.rpc.warm` (the parent's side, and the contract) starts `python -m
aiswitch.adapter_sdk.warm PARENT_PID` as its first step. This module takes SIGTERM as its
death signal (as `aiswitch.rpc.child.spawn` gives every agent child; it exits if that
parent is already gone), loads what every adapter loads (asyncio, the adapter SDK, the
peer), then waits on stdin for one line: the spec of the child it is to become,
`{"argv": [python, "-m", MODULE, ARG...], "env": {...}, "cwd": ..., "stderr": FD,
"rlimits": [[RESOURCE, SOFT, HARD], ...]}`. It becomes that child as its own start would
have made it:

- its environment is `env`, with what an interpreter adds to it as it starts (the C
  locale coerced to C.UTF-8), and the time zone is read again from it;
- it works in `cwd` (when given), which is also first on `sys.path`, as `-m` puts the
  folder it starts in;
- its stderr is the parent's descriptor `FD` (opened again through /proc, for appending),
  or /dev/null when FD is null;
- its resource limits are `rlimits`;
- `sys.argv` is `[MODULE's file, ARG...]` and MODULE runs as `__main__`.

Then it writes `ok` and a newline on stdout, the last thing it writes before MODULE
speaks the protocol, and runs MODULE (its new session was given at its start). EOF
before a spec: nobody needed it, it exits 0. A spec it cannot apply: one line
`error: ...` on stdout, exit 1 (the parent starts the child the ordinary way instead).
"""

from __future__ import annotations

import json
import os
import sys

_STDIN, _STDOUT, _STDERR = 0, 1, 2
_READ_SIZE = 65536


def _load() -> None:
    """What every adapter loads (asyncio, logging, the adapter SDK, the peer on stdio):
    loading it is most of an adapter's start."""
    import asyncio  # noqa: F401
    import logging  # noqa: F401

    import aiswitch.adapter_sdk.server
    import aiswitch.rpc.stdio  # noqa: F401


def _read_spec() -> bytes:
    """The spec's line, or b"" at EOF. Read from the descriptor, never through `sys.stdin`'s
    buffer: what follows the spec on stdin is the protocol, read by the module."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(_STDIN, _READ_SIZE)
        if not chunk:
            return b""
        data += chunk
    return data


def added_at_start() -> dict[str, str]:
    """What this interpreter added to its environment as it started (the C locale coerced
    to C.UTF-8, PEP 538): its environment now against the one it was started with."""
    try:
        with open("/proc/self/environ", "rb") as block:
            started = dict(
                entry.partition(b"=")[::2] for entry in block.read().split(b"\0") if entry
            )
    except OSError:
        return {}
    return {
        name: value
        for name, value in os.environ.items()
        if started.get(os.fsencode(name)) != os.fsencode(value)
    }


def become(spec: dict[str, object], added: dict[str, str]) -> tuple[str, list[str]]:
    """Apply `spec` to this process (module contract); the module to run and its argv."""
    import resource
    import time

    argv = [str(arg) for arg in spec["argv"]]  # type: ignore[attr-defined]
    if len(argv) < 3 or argv[1] != "-m":
        raise ValueError("argv is not PYTHON -m MODULE")
    env = spec["env"]
    if not isinstance(env, dict):
        raise ValueError("env is not a mapping")
    os.environ.clear()
    os.environ.update(env)
    # The same start in the child's environment (its startup variables are this one's)
    # would have added the same.
    os.environ.update(added)
    time.tzset()
    cwd = spec.get("cwd")
    if cwd:
        os.chdir(str(cwd))
    sys.path[0] = os.getcwd()
    for which, soft, hard in spec.get("rlimits") or []:  # type: ignore[attr-defined]
        resource.setrlimit(which, (soft, hard))
    fd = spec.get("stderr")
    path = os.devnull if fd is None else f"/proc/{os.getppid()}/fd/{int(str(fd))}"
    err = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.dup2(err, _STDERR)
    os.close(err)
    return argv[2], argv[3:]


def _die_with(parent: int) -> None:
    """SIGTERM when `parent` dies, as `aiswitch.rpc.child.spawn` gives its children; gone
    already (this process was handed to another): exit now."""
    import signal

    from aiswitch.process_group import death_signal

    arm = death_signal(signal.SIGTERM)
    if arm is not None:
        arm()
    if os.getppid() != parent:
        sys.exit(0)


def main() -> None:
    # Armed before the loading: a parent that dies meanwhile takes this one at once.
    _die_with(int(sys.argv[1]))
    added = added_at_start()
    _load()
    line = _read_spec()
    if not line:
        sys.exit(0)
    try:
        module, args = become(json.loads(line), added)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        os.write(_STDOUT, f"error: {exc}\n".encode(errors="replace"))
        sys.exit(1)
    sys.argv = [module, *args]
    os.write(_STDOUT, b"ok\n")
    import runpy

    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
