"""The Claude-log report from forked workers equals the one-process report.

The workers split the files into shares and the entries by message id (see
aiswitch.tokens.sources.claude_parallel); these tests run real forked workers over generated
log sets with duplicates inside files, across files (resumed sessions), sidechain replays and
malformed lines, and compare every report with the one-process path.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from support.claude_logs import LogSetSpec, write_claude_logs

import aiswitch.tokens.sources as sources
from aiswitch.home import Home
from aiswitch.tokens.report import Report
from aiswitch.tokens.report_options import parse_report_options
from aiswitch.tokens.sources import claude, claude_parallel, report_for_source

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("claude-config")
    spec = LogSetSpec(files=30, assistant_lines=3_000, days=5, cross_file_duplicate_rate=0.2)
    write_claude_logs(root, spec)
    return root


def _env(config: Path) -> dict[str, str]:
    return {"CLAUDE_CONFIG_DIR": str(config), "HOME": str(config.parent)}


class _Paths:
    """Counts which path a report took."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
        self.parallel = 0
        self.serial = 0
        real_aggregate = claude_parallel.aggregate_claude
        real_load = sources.load_claude

        def aggregate(*args: Any) -> Any:
            self.parallel += 1
            return real_aggregate(*args)

        def load(*args: Any, **kwargs: Any) -> Any:
            self.serial += 1
            return real_load(*args, **kwargs)

        monkeypatch.setattr(claude_parallel, "workers_for", lambda sizes: workers)
        monkeypatch.setattr(claude_parallel, "aggregate_claude", aggregate)
        monkeypatch.setattr(sources, "load_claude", load)


def _report(config: Path, home: Path, *, use_cache: bool = False, **options: Any) -> Report:
    return report_for_source(
        "claude", Home(home), parse_report_options(**options), _env(config), use_cache=use_cache
    )


def _assert_same(parallel: Report, serial: Report) -> None:
    assert parallel.warnings == serial.warnings
    assert len(parallel.rows) == len(serial.rows)
    pairs = [*zip(parallel.rows, serial.rows, strict=True), (parallel.totals, serial.totals)]
    for mine, theirs in pairs:
        # Costs are float sums taken in another order: equal to the last bits only.
        assert {k: v for k, v in mine.items() if k != "cost_usd"} == {
            k: v for k, v in theirs.items() if k != "cost_usd"
        }
        assert mine["cost_usd"] == pytest.approx(theirs["cost_usd"], rel=1e-12)


OPTIONS: list[dict[str, Any]] = [
    {"by": "day", "timezone": "UTC"},
    {"by": "day,model", "timezone": "Asia/Tokyo"},
    {"by": "session", "timezone": "UTC"},
    {"by": "month,model", "timezone": "America/Los_Angeles", "cost_mode": "calculate"},
    {"by": "week", "timezone": "UTC", "since": "2026-03-07", "until": "2026-03-08"},
    {"by": "model", "timezone": "UTC", "models": ["claude-opus-4-5"], "cost_mode": "reported"},
]


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda options: options["by"])
def test_the_parallel_report_equals_the_one_process_report(
    logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, options: Any
) -> None:
    serial = _report(logs, tmp_path / "a", **options)
    paths = _Paths(monkeypatch, workers)
    parallel = _report(logs, tmp_path / "b", **options)
    assert (paths.parallel, paths.serial) == (1, 0)
    assert gc.isenabled()  # turned off while the workers ran, and back on
    assert serial.totals["requests"] > 0
    assert any("malformed" in text for text in parallel.warnings)
    _assert_same(parallel, serial)


def test_message_ids_met_in_several_shares_count_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same message in every file (a session resumed twice) counts once, and the kept
    copy is the one ccusage keeps: not the sidechain one, then the larger of the other two
    (each found in another share)."""
    project = tmp_path / "config" / "projects" / "p"
    project.mkdir(parents=True)

    def line(session: str, request: str, sidechain: bool, output: int) -> str:
        return json.dumps(
            {
                "timestamp": "2026-03-06T10:00:00.000Z",
                "sessionId": session,
                "requestId": request,
                "isSidechain": sidechain,
                "version": "2.0.37",
                "message": {
                    "id": "msg_shared",
                    "model": "claude-sonnet-4-5-20250929",
                    "usage": {"input_tokens": 10, "output_tokens": output},
                },
            },
            separators=(",", ":"),
        )

    (project / "a.jsonl").write_text(line("a", "req_1", True, 1) + "\n")
    (project / "b.jsonl").write_text(line("a", "req_2", False, 7) + "\n")
    (project / "c.jsonl").write_text(line("c", "req_2", False, 9) + "\n")
    config = tmp_path / "config"
    serial = _report(config, tmp_path / "a", by="day", timezone="UTC")
    paths = _Paths(monkeypatch, 3)
    parallel = _report(config, tmp_path / "b", by="day", timezone="UTC")
    assert paths.parallel == 1
    assert parallel.totals["requests"] == serial.totals["requests"] == 1
    assert parallel.totals["output_tokens"] == serial.totals["output_tokens"] == 9


def test_the_index_written_by_workers_serves_the_next_report_and_sees_changes(
    logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    shutil.copytree(logs, config)  # a private copy to change
    parsed_log = tmp_path / "parsed.txt"
    real_parse = claude.parse_claude_bytes

    def parse(data: bytes, path_session: str) -> Any:
        with parsed_log.open("a") as handle:  # O_APPEND: one line per parse, from any process
            handle.write(path_session + "\n")
        return real_parse(data, path_session)

    monkeypatch.setattr(claude, "parse_claude_bytes", parse)
    paths = _Paths(monkeypatch, 2)
    home = tmp_path / "home"
    first = _report(config, home, use_cache=True, by="day,model", timezone="UTC")
    files = claude.claude_files(claude.claude_roots(_env(config)))
    assert len(parsed_log.read_text().splitlines()) == len(files)
    assert (home / "tmp" / "token-index" / "claude.marshal").exists()
    # Another report over the same files: every file comes from the index, in the workers too.
    parsed_log.write_text("")
    again = _report(config, home, use_cache=True, by="day", timezone="UTC")
    assert again.totals == first.totals
    assert parsed_log.read_text() == ""
    # An append to one file and a truncation of another: only those two are read again.
    grown, cut = files[3], files[17]
    with grown.open("a") as handle:
        handle.write(grown.read_text().splitlines()[1].replace("msg_", "msg_new") + "\n")
    cut.write_text("\n".join(cut.read_text().splitlines()[:5]) + "\n")
    changed = _report(config, home, use_cache=True, by="session", timezone="UTC")
    sessions = sorted(parsed_log.read_text().splitlines())
    assert sessions == sorted(claude.session_from_path(path) for path in (grown, cut))
    assert paths.parallel == 3
    monkeypatch.undo()
    fresh = _report(config, tmp_path / "fresh", by="session", timezone="UTC")
    _assert_same(changed, fresh)
    assert changed.totals != first.totals


def test_a_failing_worker_falls_back_to_one_process(
    logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = os.getpid()
    real_finish = claude_parallel._Share.finish

    def finish(self: Any, contested: Any) -> Any:
        if os.getpid() != parent:
            raise RuntimeError("worker broke")
        return real_finish(self, contested)

    monkeypatch.setattr(claude_parallel._Share, "finish", finish)
    paths = _Paths(monkeypatch, 2)
    report = _report(logs, tmp_path / "a", by="day", timezone="UTC")
    assert (paths.parallel, paths.serial) == (1, 1)
    assert gc.isenabled()
    monkeypatch.undo()
    _assert_same(report, _report(logs, tmp_path / "b", by="day", timezone="UTC"))


def test_shares_are_contiguous_balanced_by_weight_and_cover_every_file() -> None:
    sizes = [10, 10, 10, 100, 5, 5, 5, 5, 40, 10]
    for weight, expected in [
        (1.0, [[0, 1, 2], [3, 4], [5, 6, 7, 8, 9]]),
        (0.1, [[0], [1, 2, 3], [4, 5, 6, 7, 8, 9]]),
    ]:
        assert claude_parallel.split_shares(sizes, 3, weight) == expected


def test_small_log_sets_are_read_in_one_process() -> None:
    assert claude_parallel.workers_for([1024] * 500) == 1
    many = claude_parallel.workers_for([claude_parallel.PARALLEL_MIN_BYTES // 4] * 4)
    assert many == min(os.cpu_count() or 1, claude_parallel.MAX_WORKERS)


def test_deduplicated_claude_entries_never_share_a_message_and_request_id() -> None:
    """What lets the workers skip the report's own duplicate check: after ccusage's rules,
    no two kept entries have the same message id and request id. Random sequences from
    small pools of ids, sessions, instants and sidechain flags hit every rule."""
    import random

    rng = random.Random(11)
    for _ in range(3_000):
        entries = []
        for _ in range(rng.randint(1, 12)):
            entries.append(
                (
                    rng.choice([1, 2]),  # ts
                    rng.choice(["s1", "s2"]),
                    rng.choice(["m1", "m2", None]),
                    rng.choice(["r1", "r2", None]),
                    rng.random() < 0.4,  # sidechain
                    "claude-sonnet-4-5",
                    rng.randint(0, 3),
                    rng.randint(0, 3),
                    0,
                    0,
                    0,
                    None,
                )
            )
        kept = claude.dedupe_claude_entries(entries)
        pairs = [(entry[2], entry[3]) for entry in kept if entry[2] and entry[3]]
        assert len(pairs) == len(set(pairs)), entries


def test_source_all_leaves_out_what_the_ledger_holds_with_workers_too(
    logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiswitch.tokens.ledger import ledger_line
    from aiswitch.tokens.records import LedgerRecord

    entries = []
    for path in claude.claude_files(claude.claude_roots(_env(logs)))[:6]:
        found, _ = claude.parse_claude_bytes(path.read_bytes(), claude.session_from_path(path))
        entries += [entry for entry in found if entry[2] and entry[3]][:5]
    records = []
    for number, entry in enumerate(entries):
        # The same message in the ledger: same session, no session, or another session.
        session = [entry[1], None, "another-session"][number % 3]
        records.append(
            LedgerRecord(
                agent="claude",
                model="claude-sonnet-4-5-20250929",
                session_id=session,
                message_id=entry[2],
                request_id=entry[3],
                input_tokens=1,
                output_tokens=1,
            )
        )
    reports = []
    for workers, name in ((1, "a"), (2, "b")):
        home = Home(tmp_path / name).ensure()
        home.ledger.write_bytes(b"".join(ledger_line(record) + b"\n" for record in records))
        monkeypatch.setattr(claude_parallel, "workers_for", lambda sizes, n=workers: n)
        reports.append(
            report_for_source(
                "all",
                home,
                parse_report_options(by="day,model", timezone="UTC"),
                _env(logs),
                use_cache=False,
            )
        )
    serial, parallel = reports
    _assert_same(parallel, serial)
    claude_only = _report(logs, tmp_path / "c", by="day,model", timezone="UTC")
    # Two of every three copied messages are held by the ledger (same or no session).
    held = len(entries) - len(entries) // 3
    assert serial.totals["requests"] == claude_only.totals["requests"] + len(records) - held
