"""The supervisor's defaults, declared once (docs/agents.md lists them for users).

A module with no imports, so that the agent definitions (`aiswitch.agents`) can take their
defaults from here without loading the supervisor.
"""

from __future__ import annotations

from typing import Final

# An adapter imports little and answers at once; ten seconds covers a loaded machine.
DEFAULT_START_TIMEOUT_S: Final = 10.0
# A few quick retries cover a loaded machine; the cap keeps a broken agent from being
# retried in a tight loop; five crashes a minute is more than any healthy agent has.
DEFAULT_START_RETRIES: Final = 3
DEFAULT_BACKOFF_BASE_S: Final = 0.5
DEFAULT_BACKOFF_CAP_S: Final = 30.0
DEFAULT_CRASH_BUDGET: Final = 5
DEFAULT_CRASH_WINDOW_S: Final = 60.0
# Heartbeats: often enough to replace a wedged child within half a minute, rare enough to
# cost nothing (one inline reply).
DEFAULT_HEARTBEAT_INTERVAL_S: Final = 10.0
DEFAULT_HEARTBEAT_TIMEOUT_S: Final = 10.0
# Pools: no process kept warm between bursts by default; four processes cover most
# agents' concurrency; a minute idle keeps a process between a run's tasks without
# holding memory for nothing.
DEFAULT_POOL_MIN: Final = 0
DEFAULT_POOL_MAX: Final = 4
DEFAULT_IDLE_TIMEOUT_S: Final = 60.0
