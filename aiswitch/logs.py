"""The parent's own log: `logs/coordinator.log`, rotated by size, redacted.

Everything aiswitch's parent logs (a child's garbage line skipped, a late reply, a stop
that needed SIGKILL) goes here, not to the user's terminal. Every record passes through
`aiswitch.masking.redact_text` first, so a key that reaches a log message is masked.
"""

from __future__ import annotations

import logging
import os
import sys
from logging.handlers import RotatingFileHandler
from typing import Any

from aiswitch.home import NOFOLLOW, SECRET_FILE_MODE, Home

# The same bounds as the agents' logs: a few files of a few MiB.
from aiswitch.supervisor.logs import KEEP_ROTATED, MAX_LOG_BYTES

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Handler(RotatingFileHandler):
    """Writes the coordinator log; a log line lost to the environment (a full disk) is
    dropped quietly: the logging module would print a traceback on the user's terminal, and
    the state write that fails next says what to do, once."""

    def _open(self) -> Any:
        # Every open, the first and each after a rotation, refuses a link planted in the
        # log's place (a plain open would append through it to any file).
        fd = os.open(
            self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND | NOFOLLOW, SECRET_FILE_MODE
        )
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def handleError(self, record: logging.LogRecord) -> None:
        from aiswitch.state.store import WRITE_FAILURES

        error = sys.exc_info()[1]
        if isinstance(error, OSError) and error.errno in WRITE_FAILURES:
            return
        super().handleError(record)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from aiswitch.masking import redact_text

        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure(home: Home, level: str | None = None) -> None:
    """Send the `aiswitch` loggers to the coordinator log (once per process)."""
    root = logging.getLogger("aiswitch")
    if any(getattr(h, "_aiswitch", False) for h in root.handlers):
        return
    from aiswitch.state.store import writing

    path = home.logs / "coordinator.log"
    with writing(path):
        home.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created 0600 before the handler opens it: logs may hold prompts. NOFOLLOW: a link
        # planted in its place is refused here, before the handler would append through it.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | NOFOLLOW, SECRET_FILE_MODE))
        handler = _Handler(path, maxBytes=MAX_LOG_BYTES, backupCount=KEEP_ROTATED)
    handler._aiswitch = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("AISWITCH_LOG_LEVEL", "INFO").upper())
    root.propagate = False
