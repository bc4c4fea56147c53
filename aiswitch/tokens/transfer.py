"""Moving usage data: export, import (merge another machine's ledger) and prune (rollup).

Contract:

- `export_records(home, filters)` yields the ledger's records (malformed lines are counted in
  `ExportResult.malformed`, never fatal); `write_export(records, fmt, out)` writes them as
  `jsonl` (ledger lines, importable) or `csv` (one column per `LedgerRecord` field, also
  importable).
- `import_file(home, path)` merges another ledger: it first checks the whole file (every
  line must be a ledger record with a `ts`; otherwise one `UsageError` naming the line and
  nothing is written), then, under the ledger's lock, appends the records whose identity the
  ledger does not hold yet. Identity: `(source, message_id, request_id)` when both ids exist,
  else a digest of the whole record. So importing the same file twice adds nothing. Records
  older than the last prune's cutoff are skipped (their days are a rollup now, which keeps no
  identities) and counted. The append is one write; if it fails, the ledger is truncated back
  to its old size, so no half line is left behind.
- `prune(home, before, timezone, preset_prices)` moves the records of days before `before`
  (in `timezone`, default local) into the rollup `state/tokens-rollup.jsonl`
  (`aiswitch.tokens.rollup`, which also has its format), as sums per 15-minute slot,
  source, agent, preset, provider, model, run and session, with their cost
  frozen at prune time (the `auto` cost: reported where the CLI reported one, else
  calculated). Reports count the rollup, so their totals do not change. Malformed ledger
  lines are kept. Crash safety: the new ledger is written to a temp file first, the rollup
  then gains the entries and a `pending` marker naming that file's inode, the temp file
  replaces the ledger, and the marker is flipped to `done`; a pending marker's entries
  count only when the ledger is that inode, so a crash at any point counts nothing twice.

"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from aiswitch.errors import UsageError
from aiswitch.home import SECRET_FILE_MODE, Home
from aiswitch.state.store import writing
from aiswitch.tokens.ledger import RESOURCE as LEDGER_RESOURCE
from aiswitch.tokens.ledger import ledger_line
from aiswitch.tokens.records import STORED, LedgerRecord
from aiswitch.tokens.rollup import (
    ROLLUP_VERSION,
    add_to_rollup,
    read_rollup_file,
    rollup_line,
    rollup_path,
    utc_text,
)
from aiswitch.tokens.times import local_date

EXPORT_FORMATS = ("jsonl", "csv")
CSV_FIELDS = tuple(LedgerRecord.model_fields)


# --- export -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordFilter:
    """Which records to export: inclusive local dates and exact names (empty: all)."""

    since: date | None = None
    until: date | None = None
    agents: tuple[str, ...] = ()
    presets: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    timezone: str | None = None

    def accepts(self, record: LedgerRecord, zone: Any) -> bool:
        if self.agents and record.agent not in self.agents:
            return False
        if self.presets and record.preset not in self.presets:
            return False
        if self.models and record.model not in self.models:
            return False
        if self.runs and record.run_id not in self.runs:
            return False
        if self.since or self.until:
            day = local_date(record.ts, zone)
            if (self.since and day < self.since) or (self.until and day > self.until):
                return False
        return True


@dataclass
class ExportResult:
    records: list[LedgerRecord]
    malformed: int = 0


def _parse_record(line: bytes) -> LedgerRecord | None:
    """The record of one ledger line; None when it is malformed. The reports' reader decides
    (`aiswitch.tokens.sources.ledger`): export, prune and reports take the same lines."""
    from aiswitch.tokens.sources.ledger import line_record

    return line_record(line)


def read_ledger_records(path: Path) -> tuple[list[LedgerRecord], int]:
    """Every record of a ledger file, and how many lines were malformed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    records: list[LedgerRecord] = []
    malformed = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        record = _parse_record(line)
        if record is None:
            malformed += 1
        else:
            records.append(record)
    return records, malformed


def export_records(home: Home, where: RecordFilter | None = None) -> ExportResult:
    from aiswitch.tokens.report_options import load_timezone

    where = where or RecordFilter()
    zone = load_timezone(where.timezone)
    records, malformed = read_ledger_records(home.ledger)
    return ExportResult([r for r in records if where.accepts(r, zone)], malformed)


def write_export(records: Iterable[LedgerRecord], fmt: str, out: IO[str]) -> int:
    """Write `records` as `fmt`; returns how many were written."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown --format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    count = 0
    if fmt == "jsonl":
        for record in records:
            out.write(ledger_line(record).decode() + "\n")
            count += 1
        return count
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for record in records:
        data = record.model_dump(mode="json")
        writer.writerow(["" if data[name] is None else data[name] for name in CSV_FIELDS])
        count += 1
    return count


# --- import -------------------------------------------------------------------------------


def record_identity(record: LedgerRecord) -> str:
    """`source\\0message\\0request` when both ids exist, else a digest of the whole record."""
    key = record.dedupe_key()
    if key is not None:
        return "\x00".join(key)
    canonical = json.dumps(record.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _records_from_csv(text: str, name: str) -> list[LedgerRecord]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if "ts" not in header or not set(header) <= set(CSV_FIELDS):
        raise UsageError(
            f"{name}: not a ledger CSV (its header must be ledger fields, with ts)",
            hint="export one with `aiswitch tokens export --format csv`",
        )
    records = []
    for number, row in enumerate(reader, start=2):
        values = {
            key: _csv_value(key, value)
            for key, value in row.items()
            if key and value not in ("", None)
        }
        records.append(_record(values, name, number))
    return records


def _csv_value(name: str, text: str) -> Any:
    """A CSV cell as the JSON value a ledger line would hold (text stays text when it is not
    a number: the line rules then refuse it as they refuse it in a line)."""
    kind = STORED[name].kind
    try:
        if kind in ("version", "int", "count"):
            return int(text)
        if kind == "cost":
            try:
                return int(text)
            except ValueError:
                return float(text)
    except ValueError:
        return text
    return text


def _record(values: Any, name: str, number: int) -> LedgerRecord:
    """One line of an import file as a record (by the ledger's line rules, the ones reports
    and prune use), or the one-line error naming the line."""
    from aiswitch.tokens.sources.ledger import check_values, refused_field

    checked = check_values(values)
    if checked is None:
        raise UsageError(
            f"{name}: line {number} is not a ledger record ({refused_field(values)})",
            hint="nothing was imported",
        )
    return LedgerRecord.model_construct(**checked)


def _records_from_jsonl(data: bytes, name: str) -> list[LedgerRecord]:
    import orjson

    records = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise UsageError(
                f"{name}: line {number} is not JSON", hint="nothing was imported"
            ) from None
        if not isinstance(obj, dict) or "ts" not in obj:
            raise UsageError(
                f"{name}: line {number} is not a ledger record (an object with ts)",
                hint="nothing was imported",
            )
        records.append(_record(obj, name, number))
    return records


def read_import_file(path: Path) -> list[LedgerRecord]:
    """Every record of an import file (JSON lines or CSV), or one `UsageError`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    stripped = data.lstrip()
    if not stripped:
        return []
    if stripped.startswith(b"{"):
        return _records_from_jsonl(data, str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a ledger export (not UTF-8 text)") from None
    return _records_from_csv(text, str(path))


@dataclass
class ImportResult:
    read: int
    added: int
    duplicates: int
    before_cutoff: int
    cutoff: datetime | None = None


def import_file(home: Home, path: Path) -> ImportResult:
    from aiswitch.state.store import StateStore

    incoming = read_import_file(path)  # validates everything before anything is written
    store = StateStore(home)
    with store.lock(LEDGER_RESOURCE):
        existing, _ = read_ledger_records(home.ledger)
        known = {record_identity(record) for record in existing}
        cutoff = read_rollup_file(rollup_path(home)).cutoff()
        lines: list[bytes] = []
        duplicates = old = 0
        for record in incoming:
            ts = record.ts if record.ts.tzinfo else record.ts.replace(tzinfo=UTC)
            if cutoff is not None and ts < cutoff:
                old += 1
                continue
            identity = record_identity(record)
            if identity in known:
                duplicates += 1
                continue
            known.add(identity)
            lines.append(ledger_line(record) + b"\n")
        _append_all_or_nothing(home.ledger, b"".join(lines))
    return ImportResult(len(incoming), len(lines), duplicates, old, cutoff)


def _append_all_or_nothing(path: Path, payload: bytes) -> None:
    """Append `payload` (whole lines); on any failure, truncate back to the old size."""
    if not payload:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path, "append to"):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, SECRET_FILE_MODE)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            payload = b"\n" + payload  # a torn last line stays one bad line, never two
        with writing(path, "append to"):
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, size)
                raise
    finally:
        os.close(fd)


# --- prune --------------------------------------------------------------------------------


@dataclass
class PruneResult:
    pruned: int
    kept: int
    malformed_kept: int
    duplicates_dropped: int
    entries: int
    before: date


def prune(
    home: Home,
    before: date,
    timezone: str | None = None,
    preset_prices: Mapping[str, Mapping[str, Any]] | None = None,
) -> PruneResult:
    """Move records of days before `before` into the rollup (see the module docstring)."""
    import orjson

    from aiswitch.state.store import StateStore
    from aiswitch.tokens.prices import load_price_table, parse_price_specs
    from aiswitch.tokens.report_options import load_timezone, resolve_timezone_name

    zone = load_timezone(timezone)
    base = load_price_table(home)
    tables = {
        name: base.with_overrides(parse_price_specs(spec, f"preset {name!r}"))
        for name, spec in (preset_prices or {}).items()
    }
    store = StateStore(home)
    with store.lock(LEDGER_RESOURCE):
        try:
            data = home.ledger.read_bytes()
        except FileNotFoundError:
            data = b""
        kept: list[bytes] = []
        counted_where: dict[str, bool] = {}  # dedupe key -> was its counted copy pruned?
        sums: dict[tuple[Any, ...], list[Any]] = {}
        pruned = malformed = dropped = 0
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            record = _parse_record(line)
            if record is None:
                kept.append(line)  # never lose a line, even one we cannot read
                malformed += 1
                continue
            ts = record.ts if record.ts.tzinfo else record.ts.replace(tzinfo=UTC)
            old = local_date(ts, zone) < before
            key = record.dedupe_key()
            if key is not None:
                dedupe = "\x00".join(key)
                if dedupe in counted_where:
                    # A duplicate never counted; if the copy that counted moves into the
                    # rollup, this one would start counting once the copy is gone: drop it.
                    if counted_where[dedupe]:
                        dropped += 1
                    else:
                        kept.append(line)
                    continue
                counted_where[dedupe] = old
            if not old:
                kept.append(line)
                continue
            pruned += 1
            add_to_rollup(sums, record, ts, tables.get(record.preset or "", base))
        rollup_file = rollup_path(home)
        rollup = read_rollup_file(rollup_file)
        prune_id = 1 + max((int(m.get("prune", 0)) for m in rollup.marks), default=0)
        new_ledger = b"".join(line + b"\n" for line in kept)
        tmp = home.ledger.with_name(f".{home.ledger.name}.prune-{os.getpid()}.tmp")
        _write_synced(tmp, new_ledger)
        try:
            mark = {
                "v": ROLLUP_VERSION,
                "kind": "prune",
                "prune": prune_id,
                "before": before.isoformat(),
                "timezone": resolve_timezone_name(timezone),
                "cutoff": utc_text(datetime.combine(before, datetime.min.time(), zone)),
                "at": utc_text(datetime.now(UTC)),
                "records": pruned,
                "status": "pending",
                "ledger_inode": tmp.stat().st_ino,
            }
            entries = [rollup_line(prune_id, key, acc) for key, acc in sorted(sums.items())]
            store.write_bytes(rollup_file, _join([*rollup.lines, *entries, orjson.dumps(mark)]))
            os.replace(tmp, home.ledger)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        mark["status"] = "done"
        store.write_bytes(rollup_file, _join([*rollup.lines, *entries, orjson.dumps(mark)]))
    return PruneResult(pruned, len(kept) - malformed, malformed, dropped, len(sums), before)


def _join(lines: Sequence[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def _write_synced(path: Path, data: bytes) -> None:
    # O_NOFOLLOW: a link planted under the home never redirects a write (docs/security.md).
    with writing(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, SECRET_FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
