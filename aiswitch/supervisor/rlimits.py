"""Resource limits of an agent's processes (`limits:` in config/agents.yaml).

Contract:
- `wanted(limits)` are the (resource, soft, hard) triples `aiswitch.rpc.child.spawn` sets
  in the child before the adapter runs (in the forked child before it execs, or in a
  warm interpreter as it becomes the child): it sets
  `memory` as RLIMIT_DATA (the heap and private writable mappings: what a process
  allocates; unlike RLIMIT_AS it does not count the address space Node reserves and never
  touches), `cpu_seconds` as RLIMIT_CPU (soft; the hard limit `CPU_GRACE_S` later, so the
  kernel sends SIGXCPU first and SIGKILL only to a process that survives it),
  `open_files` as RLIMIT_NOFILE and `processes` as RLIMIT_NPROC, and no core files
  (a limit kill must not litter the working directory). Rlimits are per process and are
  inherited: the CLI an adapter runs, and anything that CLI runs, gets the same limits,
  so they bound every process of the child's group, each on its own. `processes` is the
  kernel's RLIMIT_NPROC: it counts the processes and threads of the real user, and fork
  ignores it for root (real uid 0, or CAP_SYS_RESOURCE / CAP_SYS_ADMIN in the initial user
  namespace; tests/test_resource_limits.py drops both with setpriv to show it working).
- `exit_reason(code, limits)` says which limit killed a process that ended with `code`
  (a negative code is the signal): SIGXCPU, or SIGKILL with a CPU limit set, is the CPU
  limit; None when no configured limit explains it. A process that hit `memory`,
  `open_files` or `processes` sees an allocation or a system call fail (MemoryError,
  ENOMEM, EMFILE, EAGAIN, "can't start new thread"): the adapter SDK says which limit in
  the task's error (`aiswitch.adapter_sdk.rlimits`).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from aiswitch.agents import ResourceLimits

# Between SIGXCPU (the soft CPU limit) and SIGKILL (the hard one): long enough for the
# kernel's one-per-second SIGXCPU to arrive and end a process that keeps the default action.
CPU_GRACE_S: Final = 2


def settings(limits: ResourceLimits) -> list[tuple[int, int, int]]:
    """(RLIMIT_*, soft, hard) for each configured limit, plus no core files."""
    import resource

    found: list[tuple[int, int, int]] = []
    if limits.memory is not None:
        found.append((resource.RLIMIT_DATA, limits.memory, limits.memory))
    if limits.cpu_seconds is not None:
        seconds = limits.cpu_seconds
        found.append((resource.RLIMIT_CPU, seconds, seconds + CPU_GRACE_S))
    if limits.open_files is not None:
        found.append((resource.RLIMIT_NOFILE, limits.open_files, limits.open_files))
    if limits.processes is not None:
        found.append((resource.RLIMIT_NPROC, limits.processes, limits.processes))
    if found:
        found.append((resource.RLIMIT_CORE, 0, 0))
    return found


def wanted(limits: ResourceLimits | None) -> list[tuple[int, int, int]]:
    """The (resource, soft, hard) triples that apply `limits`, never above the current hard
    limits (which an unprivileged process cannot raise)."""
    if limits is None or not limits.any():
        return []
    import resource

    found = []
    for which, soft, hard in settings(limits):
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        found.append((which, soft, hard))
    return found


def exit_reason(code: int | None, limits: ResourceLimits | None) -> str | None:
    """Which configured limit ended a process that exited with `code`, or None."""
    if code is None or code >= 0 or limits is None or limits.cpu_seconds is None:
        return None
    if -code == signal.SIGXCPU or -code == signal.SIGKILL:
        name = signal.Signals(-code).name
        return (
            f"killed by {name}: it used its CPU time limit "
            f"(limits.cpu_seconds: {limits.cpu_seconds} in config/agents.yaml)"
        )
    return None
