"""What a killed parent left running: reaped by the next invocation.

The supervisor owns `state/agents.json`; this is its one entry point for other layers
(the coordinator calls it before a run starts): children whose parent is gone (pid +
create time) are killed as a group, and entries of processes that are gone are dropped.
"""

from __future__ import annotations

from aiswitch.state.processes import ProcessTable
from aiswitch.state.store import StateStore


def reap_orphans(store: StateStore) -> list[str]:
    """Kill orphaned agent process groups; return the table keys that were reaped."""
    return ProcessTable(store).reap_orphans()
