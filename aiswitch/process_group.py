"""Process groups: children that die with their parent, and signals to a whole group.

Both the supervisor (agent processes) and the adapter SDK (the CLIs an adapter runs)
start children in their own session; these two helpers are all they share.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def death_signal(sig: signal.Signals) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `sig` when its parent dies (Linux);
    None elsewhere. The libc lookup happens here, not in the forked child."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    number = int(sig)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, number)

    return preexec


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send `sig` to a process group; a group that is already gone is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
