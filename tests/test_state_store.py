"""The state store: atomic writes, locks across processes, bad files kept and reported."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from aiswitch.errors import StateError
from aiswitch.home import Home
from aiswitch.state.store import StateStore

WORKERS = 20
PER_WORKER = 25


def _append_worker(root: str, worker: int) -> None:
    store = StateStore(Home(Path(root)))
    for n in range(PER_WORKER):
        store.append_lines(
            "ledger", store.home.ledger, [json.dumps({"w": worker, "n": n}).encode()]
        )


def _update_worker(root: str, worker: int) -> None:
    store = StateStore(Home(Path(root)))
    path = store.home.state / "counter.json"
    for _ in range(PER_WORKER):
        store.update_json("counter", path, lambda: {"n": 0}, lambda d: {"n": d["n"] + 1})


@pytest.mark.parametrize("worker", [_append_worker, _update_worker])
def test_twenty_processes_writing_at_once_lose_nothing(home: Home, worker: object) -> None:
    StateStore(home)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=worker, args=(str(home.root), w)) for w in range(WORKERS)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    if worker is _append_worker:
        lines = [json.loads(x) for x in home.ledger.read_text().splitlines()]
        assert len(lines) == WORKERS * PER_WORKER
        assert {(x["w"], x["n"]) for x in lines} == {
            (w, n) for w in range(WORKERS) for n in range(PER_WORKER)
        }
    else:
        data = json.loads((home.state / "counter.json").read_text())
        assert data == {"n": WORKERS * PER_WORKER}


def test_a_write_replaces_the_file_whole_and_leaves_no_temp_files(home: Home) -> None:
    store = StateStore(home)
    path = home.state / "x.json"
    store.write_json(path, {"a": 1})
    store.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert sorted(p.name for p in home.state.iterdir() if p.name.startswith(".")) == []
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_failed_write_keeps_the_old_file(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(home)
    path = home.state / "x.json"
    store.write_json(path, {"keep": True})

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StateError, match="No space left"):
        store.write_json(path, {"keep": False})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"keep": True}
    assert [p for p in home.state.iterdir() if p.name.endswith(".tmp")] == []


def test_a_corrupt_file_is_moved_aside_and_reported_not_deleted(home: Home) -> None:
    store = StateStore(home)
    path = home.state / "tasks.json"
    path.write_text("{not json")
    assert store.read_json(path, {"runs": []}) == {"runs": []}
    (aside,) = [p for p in home.state.iterdir() if p.name.startswith("tasks.json.corrupt-")]
    assert aside.read_text() == "{not json"
    assert store.warnings and "moved it to" in store.warnings[0]
    path.write_text("{again")
    with pytest.raises(StateError):
        store.read_json(path, None, strict=True)


def test_an_append_after_a_torn_last_line_moves_it_aside_first(home: Home) -> None:
    store = StateStore(home)
    home.ledger.write_bytes(b'{"ok":1}\n{"torn":')
    store.append_lines("ledger", home.ledger, [b'{"ok":2}'])
    assert home.ledger.read_bytes().splitlines() == [b'{"ok":1}', b'{"ok":2}']
    (aside,) = home.state.glob("tokens.jsonl.torn-*")
    assert aside.read_bytes() == b'{"torn":'


def test_the_home_is_created_private(tmp_path: Path) -> None:
    home = Home(tmp_path / "h").ensure()
    for path in (home.root, home.state, home.locks, home.logs, home.config):
        assert oct(path.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize(
    "document",
    [
        {
            "run_id": "r",
            "results": [
                {"output": 'é ✓ \u2028 "q" \\ \n', "cost_usd": None, "usage": {}, "ok": True},
                {"output": "", "duration_s": 0.1, "n": -(2**62), "tiny": 5e-324, "list": []},
            ],
            "figures": {"p95_response_s": 1e16, "empty": {}},
        },
        {"big": 2**70, 1: "int key"},  # orjson refuses these: json writes them, as before
    ],
)
def test_a_run_file_is_written_as_write_json_writes_it(document: dict[Any, Any]) -> None:
    from aiswitch.state.runs import run_file_bytes

    data = run_file_bytes(document)
    assert json.loads(data) == json.loads(json.dumps(document))
    assert data == (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
