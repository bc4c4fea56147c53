"""Where usage comes from: the aiswitch ledger and the CLIs' own logs, as report rows.

Contract, for the CLI layer:

- `load_rows(source, home, env=None, use_index=True) -> Loaded`: the usage rows of `source`
  (`aiswitch`: the ledger `state/tokens.jsonl`; `claude`, `codex`, `gemini`: that CLI's own
  logs; `all`: the ledger plus every CLI's logs without what the ledger already holds), the
  input files, and one-line warnings (malformed lines are counted and skipped, never fatal).
- `load_records(...)`: the same as `LedgerRecord`s (slower; for export and tests).
- `report_for_source(source, home, options, env=None, use_cache=True) -> Report`: rows in,
  report out, with the incremental index of `aiswitch.tokens.index` (per-file parsed rows, and
  finished reports keyed by options and input files). Reports of `aiswitch` and `all` also
  count the prune rollup (`state/tokens-rollup.jsonl`, see `aiswitch.tokens.transfer`). A
  ledger too large for the row index (`parallel.PARALLEL_LEDGER_MIN_BYTES`) is parsed and
  aggregated in parallel processes instead (`aiswitch.tokens.sources.parallel`), and its rows
  are not indexed: re-parsing it in parallel is faster than loading a million indexed rows.
  Claude logs of many files are read, deduplicated and aggregated by forked workers
  (`aiswitch.tokens.sources.claude_parallel`), through the same per-file index.
- An unknown source is a `UsageError`.

Rows are report `Row`s (or plain tuples in the same field order, as the index stores them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiswitch.errors import UsageError
from aiswitch.home import Home
from aiswitch.tokens.index import FileIndex, FileRead, Parse, ReportCache, fingerprint_files
from aiswitch.tokens.overlap import held_by_ledger, ledger_keys, merge_ledger_and_cli
from aiswitch.tokens.records import LedgerRecord
from aiswitch.tokens.report import Report, build_report
from aiswitch.tokens.report_options import ReportOptions
from aiswitch.tokens.rows import record_from_row
from aiswitch.tokens.sources import claude, codex, gemini
from aiswitch.tokens.sources.ledger import parse_ledger_bytes as parse_ledger_bytes  # re-exported

if TYPE_CHECKING:
    from aiswitch.tokens.blocks import HourSums
    from aiswitch.tokens.prices import PriceTable

SOURCES = ("aiswitch", "claude", "codex", "gemini", "all")


@dataclass
class Loaded:
    """Rows of one source, the files they came from, and what was skipped."""

    rows: list[tuple[Any, ...]]
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise UsageError(f"unknown --source {source!r} (choose from {', '.join(SOURCES)})")
    return source


# Files named one by one in the malformed-line warnings; the rest are summed in one line.
MAX_FILE_WARNINGS = 3


def malformed_warnings(source: str, reads: Iterable[tuple[Path, FileRead]]) -> list[str]:
    """One-line warnings for the malformed lines of the files read: one per file for the
    first `MAX_FILE_WARNINGS` files that had some, then one line for all the others."""
    out: list[str] = []
    more_lines = more_files = 0
    for path, read in reads:
        if not read.malformed:
            continue
        if len(out) < MAX_FILE_WARNINGS:
            tail = " (one is an unterminated last line)" if read.incomplete_tail else ""
            out.append(f"{source}: skipped {read.malformed} malformed line(s) in {path}{tail}")
        else:
            more_lines += read.malformed
            more_files += 1
    if more_files:
        out.append(
            f"{source}: skipped {more_lines} more malformed line(s) in {more_files} more file(s)"
        )
    return out


def _index(home: Home | None, name: str, use_index: bool) -> FileIndex:
    return FileIndex(home if use_index else None, name)


def load_ledger(home: Home, *, use_index: bool = True) -> Loaded:
    index = _index(home, "ledger", use_index)
    path = home.ledger
    loaded = Loaded(rows=[], files=[path])
    if path.exists():
        read = index.read_appendable(path, parse_ledger_bytes)
        loaded.rows = read.items
        loaded.warnings = malformed_warnings("aiswitch", [(path, read)])
    index.save()
    return loaded


def _read_files(
    read: Callable[[Path, Parse], FileRead], files: list[Path], parser_for: Callable[[Path], Parse]
) -> list[tuple[Path, FileRead]]:
    """Each file read through the index (`read`: `read_appendable` or `read_whole`)."""
    return [(path, read(path, parser_for(path))) for path in files]


def _unread_bytes(files: list[Path], index: FileIndex) -> list[int]:
    """Per file, the bytes a read through `index` would parse (a changed file counted whole),
    so that an index that holds them all forks no workers."""
    out: list[int] = []
    for path in files:
        try:
            stat = os.stat(path)
        except OSError:
            out.append(0)
            continue
        cached = index.entries.get(str(path))
        same = cached is not None and cached[:3] == [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        out.append(0 if same else stat.st_size)
    return out


def load_claude(
    home: Home | None, env: Mapping[str, str] | None = None, *, use_index: bool = True
) -> Loaded:
    loaded = load_claude_entries(home, env, use_index=use_index)
    loaded.rows = claude.rows_from_entries(loaded.rows)
    return loaded


def load_claude_entries(
    home: Home | None, env: Mapping[str, str] | None = None, *, use_index: bool = True
) -> Loaded:
    """`load_claude`, with the deduplicated `ClaudeEntry` tuples as `rows` (what blocks and
    the status line read)."""
    files = claude.claude_files(claude.claude_roots(env, home))
    index = _index(home, "claude", use_index)
    entries, warnings = _claude_entries(files, index, _unread_bytes(files, index))
    return Loaded(rows=entries, files=files, warnings=warnings)


def _claude_entries(
    files: list[Path], index: FileIndex, sizes: list[int]
) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The deduplicated entries of `files` (`sizes`: their unread bytes) and the warnings,
    read through `index` (saved), by forked workers when there are many bytes to parse."""
    from aiswitch.tokens.sources import claude_parallel

    workers = claude_parallel.workers_for(sizes)
    parallel = claude_parallel.read_claude(files, sizes, index, workers) if workers > 1 else None
    if parallel is not None:
        reads = list(zip(files, parallel, strict=True))
    else:
        reads = _read_files(index.read_appendable, files, claude.parser_for)
    index.save()
    entries = claude.dedupe_claude_entries([entry for _, read in reads for entry in read.items])
    return entries, malformed_warnings("claude", reads)


def claude_hour_sums(
    home: Home | None,
    table: PriceTable,
    env: Mapping[str, str] | None = None,
    *,
    use_index: bool = True,
) -> tuple[HourSums, list[str]]:
    """Claude's logs summed per hour for blocks (`aiswitch.tokens.blocks.HourSums`), and the
    warnings. With many unread bytes, forked workers read, deduplicate and sum shares of the
    files (`claude_parallel.sum_claude`) and the parent merges their sums; else (or when
    workers cannot run) the deduplicated entries are read and summed in this process."""
    from aiswitch.tokens.blocks import HourSums
    from aiswitch.tokens.sources import claude_parallel

    files = claude.claude_files(claude.claude_roots(env, home))
    index = _index(home, "claude", use_index)
    sizes = _unread_bytes(files, index)
    workers = claude_parallel.workers_for(sizes)
    if workers > 1:
        done = claude_parallel.sum_claude(
            files,
            sizes,
            index,
            lambda: HourSums(table),
            workers,
            claude_parallel.BLOCKS_PARENT_WEIGHT,
        )
        if done is not None:
            index.save()
            return done
        index = _index(home, "claude", use_index)  # as it was on disk
    entries, warnings = _claude_entries(files, index, sizes)
    sums = HourSums(table)
    sums.add_entries(entries, _identity)
    return sums, warnings


def _identity(at: int) -> int:
    return at


def _load_rewritten(
    home: Home | None,
    source: str,
    files: list[Path],
    parser_for: Callable[[Path], Parse],
    use_index: bool,
) -> Loaded:
    """The rows of files rewritten in place (Codex, Gemini): each read whole when changed."""
    index = _index(home, source, use_index)
    reads = _read_files(index.read_whole, files, parser_for)
    index.save()
    rows = [row for _, read in reads for row in read.items]
    return Loaded(rows=rows, files=files, warnings=malformed_warnings(source, reads))


def load_codex(
    home: Home | None, env: Mapping[str, str] | None = None, *, use_index: bool = True
) -> Loaded:
    homes = codex.codex_homes(env, home)

    def parser_for(path: Path) -> Parse:
        sessions = next(
            (h / "sessions" for h in homes if path.is_relative_to(h / "sessions")),
            path.parent,
        )
        return partial(
            codex.parse_codex_bytes, path_session=codex.session_from_path(path, sessions)
        )

    return _load_rewritten(home, "codex", codex.codex_files(env, home), parser_for, use_index)


def load_gemini(
    home: Home | None, env: Mapping[str, str] | None = None, *, use_index: bool = True
) -> Loaded:
    def parser_for(path: Path) -> Parse:
        return partial(gemini.parse_gemini_bytes, path=path)

    return _load_rewritten(home, "gemini", gemini.gemini_files(env, home), parser_for, use_index)


def load_rows(
    source: str,
    home: Home,
    env: Mapping[str, str] | None = None,
    *,
    use_index: bool = True,
) -> Loaded:
    """The rows of `source` (see the module docstring)."""
    check_source(source)
    if source == "aiswitch":
        return load_ledger(home, use_index=use_index)
    if source == "claude":
        return load_claude(home, env, use_index=use_index)
    if source == "codex":
        return load_codex(home, env, use_index=use_index)
    if source == "gemini":
        return load_gemini(home, env, use_index=use_index)
    ledger = load_ledger(home, use_index=use_index)
    cli = [
        load_claude(home, env, use_index=use_index),
        load_codex(home, env, use_index=use_index),
        load_gemini(home, env, use_index=use_index),
    ]
    cli_rows: list[tuple[Any, ...]] = [row for part in cli for row in part.rows]
    return Loaded(
        rows=list(merge_ledger_and_cli(ledger.rows, cli_rows)),
        files=ledger.files + [path for part in cli for path in part.files],
        warnings=ledger.warnings + [text for part in cli for text in part.warnings],
    )


def load_records(
    source: str,
    home: Home,
    env: Mapping[str, str] | None = None,
    *,
    use_index: bool = True,
) -> list[LedgerRecord]:
    """`load_rows` as `LedgerRecord`s."""
    return [record_from_row(row) for row in load_rows(source, home, env, use_index=use_index).rows]


def input_files(source: str, home: Home, env: Mapping[str, str] | None = None) -> list[Path]:
    """The files a report of `source` reads (for cache keys), without reading them."""
    from aiswitch.tokens import inputs

    return inputs.input_files(check_source(source), home, env)


def report_for_source(
    source: str,
    home: Home,
    options: ReportOptions,
    env: Mapping[str, str] | None = None,
    *,
    use_cache: bool = True,
    fingerprints: list[list[Any]] | None = None,
) -> Report:
    """The report of `source` under `options`, from the caches when the inputs are unchanged.

    `fingerprints`: the input files' `fingerprint_files`, if the caller just took them (the
    CLI's fast-path snapshot does), so that they are listed and stat-ed once."""
    cache = ReportCache(home if use_cache else None)
    environment = os.environ if env is None else env
    roots = [
        environment.get(name, "")
        for name in ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "GEMINI_DATA_DIR", "HOME")
    ]
    if fingerprints is None:
        fingerprints = fingerprint_files(input_files(source, home, env))
    files = [Path(path) for path, _, _, _ in fingerprints]
    key = cache.key(f"{source}|{roots}", options.cache_key(), fingerprints)
    cached = cache.get(key)
    if cached is not None:
        return Report.from_dict(cached)
    report = None
    if source == "aiswitch":
        report = _ledger_report_in_parallel(home, options)
    elif source == "claude":  # its input files are exactly the Claude logs
        sizes = [size for _, size, _, _ in fingerprints]
        report = _claude_report_in_parallel(home if use_cache else None, options, files, sizes)
    elif source == "all":
        report = _all_report_in_parallel(home, options, env, fingerprints, use_cache)
    if report is None:
        rollup: list[tuple[Any, ...]] = []
        warnings: list[str] = []
        if source in ("aiswitch", "all"):
            from aiswitch.tokens.rollup import read_rollup

            rollup, warnings = read_rollup(home)
        loaded = load_rows(source, home, env, use_index=use_cache)
        report = build_report(
            loaded.rows, options, warnings=warnings + loaded.warnings, rollup=rollup
        )
    cache.put(key, report.as_dict())
    return report


def _ledger_report_in_parallel(home: Home, options: ReportOptions) -> Report | None:
    """The ledger's report from parallel workers, or None when the ledger is too small."""
    from aiswitch.tokens.rollup import read_rollup
    from aiswitch.tokens.sources import parallel

    path = home.ledger
    try:
        size = path.stat().st_size
    except OSError:
        return None
    workers = parallel.parallel_workers(size)
    if workers < 2:
        return None
    rollup, warnings = read_rollup(home)
    try:
        aggregator, malformed, torn = parallel.aggregate_ledger(path, options, workers)
    except OSError:
        return None
    aggregator.add_rollup(rollup)
    warnings += malformed_warnings("aiswitch", [(path, FileRead([], malformed, torn))])
    return aggregator.finish(warnings)


def _claude_report_in_parallel(
    home: Home | None, options: ReportOptions, files: list[Path], sizes: list[int]
) -> Report | None:
    """The report of the Claude logs `files` (of `sizes` bytes) from parallel workers, or
    None when there are too few."""
    from aiswitch.tokens.sources import claude_parallel

    workers = claude_parallel.workers_for(sizes)
    if workers < 2:
        return None
    index = _index(home, "claude", home is not None)
    done = claude_parallel.aggregate_claude(files, sizes, index, options, workers)
    if done is None:
        return None
    index.save()
    aggregator, warnings = done
    return aggregator.finish(warnings)


def _all_report_in_parallel(
    home: Home,
    options: ReportOptions,
    env: Mapping[str, str] | None,
    fingerprints: list[list[Any]],
    use_index: bool,
) -> Report | None:
    """`--source all` with the Claude logs read by parallel workers (as `load_rows` and
    `build_report` would, without the Claude rows the ledger holds), or None when there are
    too few Claude logs for workers."""
    from aiswitch.tokens.rollup import read_rollup
    from aiswitch.tokens.sources import claude_parallel

    files = claude.claude_files(claude.claude_roots(env, home))
    size_of = {path: size for path, size, _, _ in fingerprints}
    sizes = [size_of.get(str(path), 0) for path in files]
    workers = claude_parallel.workers_for(sizes)
    if workers < 2:
        return None
    ledger = load_ledger(home, use_index=use_index)
    known = ledger_keys(ledger.rows)
    index = _index(home, "claude", use_index)
    done = claude_parallel.aggregate_claude(files, sizes, index, options, workers, known)
    if done is None:
        return None
    index.save()
    aggregator, claude_warnings = done
    others = [
        load_codex(home, env, use_index=use_index),
        load_gemini(home, env, use_index=use_index),
    ]
    rollup, warnings = read_rollup(home)
    aggregator.add_rollup(rollup)
    aggregator.add(ledger.rows)
    aggregator.add(row for part in others for row in part.rows if not held_by_ledger(row, known))
    warnings += ledger.warnings + claude_warnings
    return aggregator.finish(warnings + [text for part in others for text in part.warnings])


@dataclass
class PresetSettings:
    """What presets change in a report: price overrides, and which are subscriptions."""

    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscription: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)


def preset_settings(home: Home) -> PresetSettings:
    """Price overrides and subscription presets from the preset store.

    A preset store that cannot be read does not stop a report: its prices are left out and
    a warning says so (the report then prices those presets' usage from the table)."""
    from aiswitch.errors import AiswitchError

    settings = PresetSettings()
    try:
        from aiswitch.presets.store import PresetStore

        presets = PresetStore(home).all()
    except (AiswitchError, ImportError) as exc:
        text = exc.one_line() if isinstance(exc, AiswitchError) else str(exc)
        settings.warnings.append(f"presets not read, their prices and billing ignored: {text}")
        return settings
    subscription = []
    for name, preset in presets.items():
        prices = getattr(preset, "prices", None) or {}
        if prices:
            settings.prices[name] = {
                model: (
                    price.model_dump(exclude_none=True)
                    if hasattr(price, "model_dump")
                    else dict(price)
                )
                for model, price in prices.items()
            }
        if getattr(preset, "billing", None) == "subscription":
            subscription.append(name)
    settings.subscription = tuple(sorted(subscription))
    return settings
