"""`load_rows("claude")` read by forked workers (`claude_parallel.read_claude`) gives exactly
the rows, warnings and index of the one-process read: cold, from the index the workers wrote,
after appends, truncations and torn last lines, and when a worker fails."""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from support.claude_logs import LogSetSpec, write_claude_logs

import aiswitch.tokens.sources as sources
from aiswitch.home import Home
from aiswitch.tokens.sources import claude, claude_parallel

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("claude-config")
    spec = LogSetSpec(files=24, assistant_lines=2_000, days=4, cross_file_duplicate_rate=0.2)
    write_claude_logs(root, spec)
    return root


def _env(config: Path) -> dict[str, str]:
    return {"CLAUDE_CONFIG_DIR": str(config), "HOME": str(config.parent)}


def _load(config: Path, home: Path | None, monkeypatch: pytest.MonkeyPatch, workers: int) -> Any:
    calls: list[int] = []
    real = claude_parallel.read_claude

    def counted(*args: Any) -> Any:
        calls.append(args[3])
        return real(*args)

    with monkeypatch.context() as patch:
        patch.setattr(claude_parallel, "workers_for", lambda sizes: workers)
        patch.setattr(claude_parallel, "read_claude", counted)
        loaded = sources.load_claude(Home(home) if home else None, _env(config))
    assert calls == ([workers] if workers > 1 else [])
    assert gc.isenabled()
    return loaded


def _same(parallel: Any, serial: Any) -> None:
    assert parallel.rows == serial.rows
    assert parallel.warnings == serial.warnings
    assert parallel.files == serial.files


@pytest.mark.parametrize("workers", [2, 3])
def test_worker_reads_equal_the_one_process_read_cold_warm_and_after_changes(
    logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    config = tmp_path / "config"
    shutil.copytree(logs, config)
    files = claude.claude_files(claude.claude_roots(_env(config)))
    # A torn last line (a writer mid-append): parsed, never cached.
    with files[-1].open("ab") as handle:
        handle.write(files[-1].read_bytes().splitlines()[1][:-1])
    home = tmp_path / "home"
    cold = _load(config, home, monkeypatch, workers)
    serial = _load(config, None, monkeypatch, 1)
    assert len(serial.rows) > 1_000
    assert any("malformed" in text for text in serial.warnings)
    _same(cold, serial)
    # Every file from the index the workers wrote (the parent's copy of their entries).
    _same(_load(config, home, monkeypatch, workers), serial)
    _same(_load(config, home, monkeypatch, 1), serial)
    grown, cut = files[2], files[len(files) // 2 + 1]
    with grown.open("a") as handle:
        handle.write(grown.read_text().splitlines()[1].replace("msg_", "msg_new") + "\n")
    cut.write_text("\n".join(cut.read_text().splitlines()[:5]) + "\n")
    changed = _load(config, home, monkeypatch, workers)
    fresh = _load(config, None, monkeypatch, 1)
    _same(changed, fresh)
    assert changed.rows != serial.rows
    _same(_load(config, home, monkeypatch, 1), fresh)


def test_a_failing_worker_falls_back_to_one_process(
    logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = os.getpid()
    real_parser_for = claude.parser_for

    def parser_for(path: Path) -> Any:
        if os.getpid() != parent:
            raise RuntimeError("worker broke")
        return real_parser_for(path)

    monkeypatch.setattr(claude, "parser_for", parser_for)
    with monkeypatch.context() as patch:
        patch.setattr(claude_parallel, "workers_for", lambda sizes: 2)
        broken = sources.load_claude(Home(tmp_path / "home"), _env(logs))
    assert gc.isenabled()
    _same(broken, _load(logs, None, monkeypatch, 1))


def test_an_index_that_holds_every_file_forks_no_worker(
    logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home(tmp_path / "home")
    sources.load_claude(home, _env(logs))
    seen: list[list[int]] = []
    real = claude_parallel.workers_for

    def workers_for(sizes: list[int]) -> int:
        seen.append(list(sizes))
        return real(sizes)

    monkeypatch.setattr(claude_parallel, "workers_for", workers_for)
    sources.load_claude(home, _env(logs))
    assert len(seen) == 1 and seen[0] and not any(seen[0])
