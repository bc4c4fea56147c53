"""The protocol's method and notification names, declared once.

A tiny module with no pydantic in it, so that an adapter can name methods without
paying for the models at its handshake. `aiswitch.protocol.models` pairs each name with
its params and result models (the method table); every caller uses these constants,
never the strings themselves.
"""

from __future__ import annotations

from typing import Final

INITIALIZE: Final = "agent.initialize"
STATUS: Final = "agent.status"
SHUTDOWN: Final = "agent.shutdown"
ASSIGN: Final = "task.assign"
CANCEL: Final = "task.cancel"
TASK_STATUS: Final = "task.status"
TASK_RESULT: Final = "task.result"
ENV_SWITCH: Final = "env.switch"
ENV_SNAPSHOT: Final = "env.snapshot"
ENV_ROLLBACK: Final = "env.rollback"
METRICS_QUERY: Final = "metrics.query"

PROGRESS: Final = "task.progress"
USAGE: Final = "tokens.usage"
METRICS_REPORT: Final = "metrics.report"
LOG: Final = "log"
