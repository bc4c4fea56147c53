"""The parent's own log: `logs/coordinator.log`, JSON lines, rotated by size, redacted.

Everything aiswitch's parent logs (a child's garbage line skipped, a late reply, a stop
that needed SIGKILL) goes here, not to the user's terminal (`aiswitch -v` prints it on
stderr too). Each record is one JSON object on one line: `time` (UTC, ISO 8601, ms),
`level`, `logger`, `message`, `pid`, and `exception` when there is one. Every record passes
through `aiswitch.masking.redact_text` first (its exception text too), so a key that
reaches a log message is masked. Past `MAX_LOG_BYTES` the log is compressed to
`coordinator.log.1.gz` (older parts shifted, as agent logs are: `aiswitch.supervisor.logs`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiswitch.home import NOFOLLOW, SECRET_FILE_MODE, Home

# The same bounds as the agents' logs: a few files of a few MiB.
from aiswitch.supervisor.logs import KEEP_ROTATED, MAX_LOG_BYTES, compress


class JsonLines(logging.Formatter):
    """One record, one JSON object on one line (module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        from aiswitch.masking import redact_text

        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            out["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


class _QuietWriteFailures(logging.Handler):
    """A log line lost to the environment (a full disk) is dropped quietly: the logging
    module would print a traceback on the user's terminal, and the state write that fails
    next says what to do, once."""

    def handleError(self, record: logging.LogRecord) -> None:
        from aiswitch.state.store import WRITE_FAILURES

        error = sys.exc_info()[1]
        if isinstance(error, OSError) and error.errno in WRITE_FAILURES:
            return
        super().handleError(record)


class _FirstRecordOpens(_QuietWriteFailures):
    """The coordinator log's handler: the rotating file handler (`_rotating_file`) is made
    for the first record, so a process that logs nothing (a quiet run) never imports
    logging.handlers (~4 ms of every start here)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.file: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.file is None:
            try:
                self.file = _rotating_file(self.path)
            except Exception:
                self.handleError(record)
                return
        self.file.handle(record)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        super().close()


def _rotating_file(path: Path) -> logging.Handler:
    """Writes the coordinator log, rotated and compressed past `MAX_LOG_BYTES`."""
    from logging.handlers import RotatingFileHandler

    class Handler(_QuietWriteFailures, RotatingFileHandler):
        def _open(self) -> Any:
            # Every open, the first and each after a rotation, refuses a link planted in the
            # log's place (a plain open would append through it to any file).
            fd = os.open(
                self.baseFilename,
                os.O_WRONLY | os.O_CREAT | os.O_APPEND | NOFOLLOW,
                SECRET_FILE_MODE,
            )
            return open(fd, "a", encoding=self.encoding, errors=self.errors)

    handler = Handler(path, maxBytes=MAX_LOG_BYTES, backupCount=KEEP_ROTATED)
    # Rotated parts are compressed: coordinator.log.1.gz, .2.gz, ….
    handler.namer = lambda name: name + ".gz"
    handler.rotator = lambda source, dest: compress(Path(source), Path(dest))
    handler.setFormatter(JsonLines())
    return handler


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
    handler = _FirstRecordOpens(path)
    handler._aiswitch = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    wanted = logging.getLevelName((level or os.environ.get("AISWITCH_LOG_LEVEL", "INFO")).upper())
    # `aiswitch -vv` may have asked for more already (aiswitch.cli.verbosity).
    if not isinstance(wanted, int):
        wanted = logging.INFO
    if root.level == logging.NOTSET or root.level > wanted:
        root.setLevel(wanted)
    root.propagate = False
