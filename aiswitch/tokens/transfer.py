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
  (in `timezone`, default local) into the rollup `state/tokens-rollup.jsonl`, as sums per
  15-minute slot, source, agent, preset, provider, model, run and session, with their cost
  frozen at prune time (the `auto` cost: reported where the CLI reported one, else
  calculated). Reports count the rollup, so their totals do not change. Malformed ledger
  lines are kept. Crash safety: the new ledger is written to a temp file first, the rollup
  then gains the entries and a `pending` marker naming that file's inode, the temp file
  replaces the ledger, and the marker is flipped to `done`; a pending marker's entries
  count only when the ledger is that inode, so a crash at any point counts nothing twice.

Rollup format (version 1), one JSON object per line:

    {"v": 1, "kind": "rollup", "prune": <id>, "slot": "<UTC ISO start of a 15-minute slot>",
     "source", "agent", "preset", "provider", "model", "run_id", "session_id",
     <input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,
      cache_write_1h_tokens>, "requests", "reported_cost_usd", "reported_requests",
     "calculated_cost_usd", "calculated_requests", "unpriced_requests"}
    {"v": 1, "kind": "prune", "prune": <id>, "before": "YYYY-MM-DD", "timezone": "...",
     "cutoff": "<UTC ISO of local midnight of before>", "at": "<UTC ISO>", "records": N,
     "status": "pending" | "done", "ledger_inode": N}
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any

from aiswitch.errors import UsageError
from aiswitch.home import SECRET_FILE_MODE, Home
from aiswitch.state.store import writing
from aiswitch.tokens.ledger import RESOURCE as LEDGER_RESOURCE
from aiswitch.tokens.ledger import ledger_line
from aiswitch.tokens.records import STORED, LedgerRecord
from aiswitch.tokens.schema import MAX_INT64
from aiswitch.tokens.times import SLOT_SECONDS, local_date  # the rollup's time grain

ROLLUP_FILE = "tokens-rollup.jsonl"
ROLLUP_VERSION = 1
EXPORT_FORMATS = ("jsonl", "csv")
TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cache_write_1h_tokens",
)
TEXT_FIELDS = ("source", "agent", "preset", "provider", "model", "run_id", "session_id")
COST_FIELDS = (
    "requests",
    "reported_cost_usd",
    "reported_requests",
    "calculated_cost_usd",
    "calculated_requests",
    "unpriced_requests",
)
CSV_FIELDS = tuple(LedgerRecord.model_fields)


def rollup_path(home: Home) -> Path:
    return home.state / ROLLUP_FILE


# --- the rollup ---------------------------------------------------------------------------


def _entry(obj: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """A rollup entry (the `U_*` order of `aiswitch.tokens.report`), None when off-schema."""
    try:
        ts = datetime.fromisoformat(obj["slot"])
    except (KeyError, TypeError, ValueError):
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    texts = tuple(obj.get(name) for name in TEXT_FIELDS)
    counts = tuple(obj.get(name, 0) for name in TOKEN_FIELDS)
    costs = tuple(obj.get(name, 0) for name in COST_FIELDS)
    if any(value is not None and type(value) is not str for value in texts):
        return None
    if any(type(value) is not int or value < 0 for value in counts):
        return None
    # A ledger line may report any number as its cost (schema kind `cost`), so a sum may be
    # below zero too; reading it back must not drop the entry's tokens with it.
    if any(type(value) not in (int, float) for value in costs):
        return None
    return (ts.timestamp(), *texts, *counts, *costs)


@dataclass
class RollupFile:
    """A parsed rollup: its lines (kept verbatim for rewrites), entries and markers."""

    lines: list[bytes] = field(default_factory=list)
    entries: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)  # (prune id, …)
    marks: list[dict[str, Any]] = field(default_factory=list)
    malformed: int = 0

    def live_entries(self, ledger_inode: int | None) -> list[tuple[Any, ...]]:
        """Entries of finished prunes, and of a pending one whose new ledger is in place."""
        dead = {
            mark.get("prune")
            for mark in self.marks
            if mark.get("status") == "pending" and mark.get("ledger_inode") != ledger_inode
        }
        return [entry for prune_id, entry in self.entries if prune_id not in dead]

    def cutoff(self) -> datetime | None:
        """The latest prune cutoff (an instant: local midnight of `before`)."""
        found: datetime | None = None
        for mark in self.marks:
            try:
                instant = datetime.fromisoformat(str(mark.get("cutoff")))
            except ValueError:
                continue
            if found is None or instant > found:
                found = instant
        return found


def read_rollup_file(path: Path) -> RollupFile:
    import orjson

    result = RollupFile()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return result
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        result.lines.append(line)
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            result.malformed += 1
            continue
        if not isinstance(obj, dict):
            result.malformed += 1
        elif obj.get("kind") == "prune":
            result.marks.append(obj)
        elif (entry := _entry(obj)) is not None:
            prune_id = obj.get("prune")
            result.entries.append((prune_id if isinstance(prune_id, int) else 0, entry))
        else:
            result.malformed += 1
    return result


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def read_rollup(home: Home) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The rollup entries reports count, and a warning when some lines were unreadable."""
    path = rollup_path(home)
    rollup = read_rollup_file(path)
    warnings = []
    if rollup.malformed:
        warnings.append(f"aiswitch: skipped {rollup.malformed} malformed line(s) in {path}")
    return rollup.live_entries(_inode(home.ledger)), warnings


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
    from aiswitch.tokens.report import load_timezone

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
    from aiswitch.tokens.report import load_timezone, resolve_timezone_name

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
            _add_to_rollup(sums, record, ts, tables.get(record.preset or "", base))
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
                "cutoff": _utc_text(datetime.combine(before, datetime.min.time(), zone)),
                "at": _utc_text(datetime.now(UTC)),
                "records": pruned,
                "status": "pending",
                "ledger_inode": tmp.stat().st_ino,
            }
            entries = [_rollup_line(prune_id, key, acc) for key, acc in sorted(sums.items())]
            store.write_bytes(rollup_file, _join([*rollup.lines, *entries, orjson.dumps(mark)]))
            os.replace(tmp, home.ledger)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        mark["status"] = "done"
        store.write_bytes(rollup_file, _join([*rollup.lines, *entries, orjson.dumps(mark)]))
    return PruneResult(pruned, len(kept) - malformed, malformed, dropped, len(sums), before)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


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


def _add_to_rollup(
    sums: dict[tuple[Any, ...], list[Any]], record: LedgerRecord, ts: datetime, table: Any
) -> None:
    slot = int(ts.timestamp()) // SLOT_SECONDS * SLOT_SECONDS
    texts = tuple(getattr(record, name) or "" for name in TEXT_FIELDS)
    counts = [getattr(record, name) for name in TOKEN_FIELDS]
    # An entry's sums stay 64-bit integers (what a line holds as one): a sum that would pass
    # MAX_INT64 goes on in a further entry of the same slot and names.
    part = 0
    while True:
        key = (slot, *texts, part)
        acc = sums.get(key)
        if acc is None:
            acc = sums[key] = [0] * len(TOKEN_FIELDS) + [0, 0.0, 0, 0.0, 0, 0]
        if all(a + c <= MAX_INT64 for a, c in zip(acc, counts, strict=False)):
            break
        part += 1
    for index, count in enumerate(counts):
        acc[index] += count
    base = len(TOKEN_FIELDS)
    acc[base] += 1
    if record.cost_source == "reported" and record.cost_usd is not None:
        acc[base + 1] += record.cost_usd
        acc[base + 2] += 1
        return
    price = table.lookup(record.model)
    if price is None:
        acc[base + 5] += 1
        return
    acc[base + 3] += price.cost(
        record.input_tokens,
        record.output_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.cache_write_1h_tokens,
        table.tier_rule,
    )
    acc[base + 4] += 1


def _rollup_line(prune_id: int, key: tuple[Any, ...], acc: list[Any]) -> bytes:
    import orjson

    slot, *texts, _part = key
    obj: dict[str, Any] = {
        "v": ROLLUP_VERSION,
        "kind": "rollup",
        "prune": prune_id,
        "slot": _utc_text(datetime.fromtimestamp(slot, UTC)),
    }
    for name, value in zip(TEXT_FIELDS, texts, strict=True):
        if value:
            obj[name] = value
    obj.update(zip(TOKEN_FIELDS, acc[: len(TOKEN_FIELDS)], strict=True))
    obj.update(zip(COST_FIELDS, acc[len(TOKEN_FIELDS) :], strict=True))
    return orjson.dumps(obj)
