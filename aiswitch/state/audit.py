"""The audit log: who changed what, append-only, under the home (`logs/audit.jsonl`).

Contract:
- One JSON object per line: `ts` (UTC, ISO 8601), `user` and `uid` (the real user),
  `pid`, `action` (a dotted name: `preset.add`, `preset.reveal`, `run.start`,
  `run.cancel`, `quota.set`, `tokens.import`, …) and what it touched (names, ids,
  counts: never a value). Every line also goes through `redact_text`, so a secret
  that reached a detail by mistake is masked before it is written.
- A record is one `write(2)` on a descriptor opened `O_APPEND`: the kernel moves the
  offset to the end and writes the bytes as one step, so records of concurrent processes
  never interleave or overwrite each other (POSIX: "the file offset shall be set to the
  end of the file prior to each write and no intervening file modification operation
  shall occur between changing the file offset and the write operation"; Linux holds the
  inode's lock for the whole write on a local file system). No file lock is needed for
  that, and none is taken: a lock would make every audited command wait on another's
  fsync. A record is capped at `MAX_RECORD_BYTES` (PIPE_BUF, which also keeps it whole on
  a pipe or FIFO someone points the file at); longer details are cut.
- Never fatal: a record that cannot be written (a full disk, a read-only home) is a
  warning on the `aiswitch.audit` logger; the command it describes goes on.
- `read_records` reads the file back, skipping (and counting) lines that are not records.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from aiswitch.home import DIR_MODE, NOFOLLOW, SECRET_FILE_MODE, Home

# PIPE_BUF on Linux: the size up to which a write to a pipe is atomic; a record never
# needs more (names and ids), and staying under it keeps it whole wherever it goes.
MAX_RECORD_BYTES: Final = 4096
# A detail string longer than this is cut (a task prompt, a long list of names).
MAX_DETAIL_CHARS: Final = 300

log = logging.getLogger("aiswitch.audit")


def audit_path(home: Home) -> Path:
    return home.logs / "audit.jsonl"


def _who() -> dict[str, Any]:
    uid = os.getuid()
    try:
        import pwd

        user = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        user = os.environ.get("USER") or str(uid)
    return {"user": user, "uid": uid, "pid": os.getpid()}


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_DETAIL_CHARS:
        return value[: MAX_DETAIL_CHARS - 1] + "…"
    if isinstance(value, list | tuple):
        return [_short(v) for v in value]
    return value


def record_line(action: str, details: dict[str, Any]) -> bytes:
    """The bytes of one record (ends with a newline; at most MAX_RECORD_BYTES)."""
    from aiswitch.masking import redact_text

    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body = {"ts": stamp, **_who(), "action": action}
    body.update({k: _short(v) for k, v in details.items() if v is not None})
    text = redact_text(json.dumps(body, ensure_ascii=False, sort_keys=False, default=str))
    data = text.encode() + b"\n"
    if len(data) > MAX_RECORD_BYTES:
        kept = {k: body[k] for k in ("ts", "user", "uid", "pid", "action")}
        kept["truncated"] = True
        data = redact_text(json.dumps(kept, ensure_ascii=False)).encode() + b"\n"
    return data


def audit(action: str, *, home: Home | None = None, **details: Any) -> None:
    """Append one record of `action` by this process (in `home`, by default the current
    one); never raises for the disk's sake."""
    data = record_line(action, details)
    path = audit_path(home or Home.current())
    try:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW, SECRET_FILE_MODE)
        except FileNotFoundError:
            path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW, SECRET_FILE_MODE)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):  # a full disk mid-record: say so (the line is torn)
            log.warning("audit log %s: record cut short (%d of %d bytes)", path, written, len(data))
    except OSError as exc:
        log.warning("cannot write the audit log %s: %s (%s)", path, exc.strerror, action)


def read_records(home: Home) -> Iterator[dict[str, Any]]:
    """The records in file order; lines that are not JSON objects are skipped."""
    path = audit_path(home)
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    except FileNotFoundError:
        return
    with os.fdopen(fd, "rb") as handle:
        for line in handle:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and isinstance(value.get("action"), str):
                yield value
