"""Blocks from hourly sums (`aiswitch.tokens.blocks.HourSums`) equal blocks built entry by
entry, and the blocks the forked workers sum (`claude_parallel.sum_claude`) equal the
one-process blocks: cold, from the index they wrote, with messages met in several files, with
requests of several models at the same millisecond, and when a worker fails.

The reference below is the rule of the blocks module's docstring applied to each entry in
time order (as ccusage does and as `build_blocks` did before it summed hours); the random
entries put requests on whole hours, exactly one window apart, in the same millisecond, and
with pauses longer than the window, where an hourly sum could go wrong.
"""

from __future__ import annotations

import gc
import json
import os
import random
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.claude_logs import LogSetSpec, write_claude_logs

import aiswitch.tokens.sources as sources
from aiswitch.home import Home
from aiswitch.tokens.blocks import (
    HOUR_MS,
    SESSION_MS,
    SYNTHETIC_MODEL,
    EntryPricer,
    build_blocks,
    iso_ms,
)
from aiswitch.tokens.prices import PriceTable, load_price_table
from aiswitch.tokens.sources import claude, claude_parallel

pytestmark = pytest.mark.timeout(120)

NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
# Priced at one rate, priced with tiers (above 200k prompt tokens), synthetic, unpriced.
MODELS = [
    "claude-opus-4-5-20251101",
    "claude-sonnet-4-5-20250929",
    SYNTHETIC_MODEL,
    "no-such-model-7",
    None,
]


def reference_blocks(entries: list[tuple[Any, ...]], table: PriceTable) -> list[dict[str, Any]]:
    """Blocks entry by entry, in time order (ties in input order)."""
    cost_of = EntryPricer(table).cost
    out: list[dict[str, Any]] = []
    block: dict[str, Any] | None = None
    for entry in sorted(entries, key=lambda item: item[0]):
        ts = entry[0]
        if block is not None and (
            ts - block["start"] > SESSION_MS or ts - block["last"] > SESSION_MS
        ):
            out.append(block)
            if ts - block["last"] > SESSION_MS:
                out.append({"gap": iso_ms(block["last"] + SESSION_MS), "end": iso_ms(ts)})
            block = None
        if block is None:
            block = {"start": ts - ts % HOUR_MS, "first": ts, "last": ts, "entries": 0}
            block.update(counts=[0, 0, 0, 0], cost=0.0, unpriced=0, models={})
        block["last"] = ts
        block["entries"] += 1
        for at, index in enumerate((6, 7, 9, 8)):  # input, output, cache write, cache read
            block["counts"][at] += entry[index]
        if entry[5] and entry[5] != SYNTHETIC_MODEL:
            block["models"].setdefault(entry[5], None)
        cost = cost_of(entry)
        if cost is None:
            block["unpriced"] += 1
        else:
            block["cost"] += cost
    if block is not None:
        out.append(block)
    return out


def assert_blocks_match(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        if "gap" in theirs:
            assert mine["isGap"] and mine["startTime"] == theirs["gap"]
            assert mine["endTime"] == theirs["end"]
            continue
        assert not mine["isGap"]
        assert mine["startTime"] == iso_ms(theirs["start"])
        assert mine["first_entry_ms"] == theirs["first"]
        assert mine["actualEndTime"] == iso_ms(theirs["last"])
        assert mine["entries"] == theirs["entries"]
        counts = mine["tokenCounts"]
        assert [
            counts["inputTokens"],
            counts["outputTokens"],
            counts["cacheCreationInputTokens"],
            counts["cacheReadInputTokens"],
        ] == theirs["counts"]
        assert mine["models"] == list(theirs["models"])
        assert mine["unpriced_entries"] == theirs["unpriced"]
        assert mine["costUSD"] == pytest.approx(theirs["cost"], rel=1e-12, abs=1e-12)


def _random_entries(rng: random.Random, count: int) -> list[tuple[Any, ...]]:
    base = 1_772_755_200_000  # 2026-03-06T00:00:00Z, a whole hour
    at = base
    entries = []
    for _ in range(count):
        step = rng.choice(
            [0, 0, 1, 999, 60_000, HOUR_MS - 1, HOUR_MS, SESSION_MS, SESSION_MS + 1, 9 * HOUR_MS]
        )
        at += step if rng.random() < 0.8 else rng.randrange(0, 3 * HOUR_MS)
        # Now and then exactly on an hour, or exactly a window after the block's hour.
        if rng.random() < 0.1:
            at += -at % HOUR_MS
        write = rng.randrange(0, 300_000)
        entries.append(
            (
                at,
                "session",
                None,
                None,
                False,
                rng.choice(MODELS),
                rng.randrange(0, 120_000),
                rng.randrange(0, 4_000),
                rng.randrange(0, 200_000),
                write,
                rng.randrange(0, write + 1),
                rng.choice([None, None, None, 0.25, 1.5]),  # a reported cost, sometimes
            )
        )
    rng.shuffle(entries)  # logs are not in time order across files
    return entries


def test_blocks_from_hourly_sums_equal_blocks_built_entry_by_entry() -> None:
    table = PriceTable.bundled()
    assert table.lookup(MODELS[1]) is not None and table.lookup(MODELS[1]).tiers
    assert table.lookup(MODELS[0]) is not None and not table.lookup(MODELS[0]).tiers
    rng = random.Random(5)
    for rule_table in (table, table.with_tier_rule("per_counter")):
        for _ in range(200):
            entries = _random_entries(rng, rng.randint(1, 60))
            assert_blocks_match(
                build_blocks(entries, rule_table, NOW), reference_blocks(entries, rule_table)
            )


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated log set with messages copied across files, plus files whose requests of
    different models share milliseconds (within and across files, some of them the same
    message copied)."""
    root = tmp_path_factory.mktemp("claude-config")
    spec = LogSetSpec(files=30, assistant_lines=3_000, days=5, cross_file_duplicate_rate=0.2)
    write_claude_logs(root, spec)
    project = root / "projects" / "-home-dev-ties"
    project.mkdir(parents=True)
    rng = random.Random(3)
    for number in range(8):
        lines = []
        for step in range(40):
            stamp = datetime(2026, 3, 7, 10 + step // 10, step % 10, tzinfo=UTC)
            message = f"msg_tie_{rng.randrange(60)}"  # the same id in several files
            usage = {"input_tokens": rng.randrange(1, 900), "output_tokens": rng.randrange(900)}
            line = {
                "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "sessionId": f"tie-{number}",
                "requestId": f"req_{message}",
                "version": "2.1.197",
                "message": {"id": message, "model": rng.choice(MODELS[:3]), "usage": usage},
            }
            lines.append(json.dumps(line, separators=(",", ":")))
        (project / f"tie-{number}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _env(config: Path) -> dict[str, str]:
    return {"CLAUDE_CONFIG_DIR": str(config), "HOME": str(config.parent)}


def _blocks(
    config: Path, home: Path | None, monkeypatch: pytest.MonkeyPatch, workers: int
) -> tuple[list[dict[str, Any]], list[str], int]:
    """The blocks and warnings with `workers` processes, and how many `sum_claude` runs."""
    calls: list[int] = []
    real = claude_parallel.sum_claude

    def counted(*args: Any) -> Any:
        calls.append(args[4])
        return real(*args)

    with monkeypatch.context() as patch:
        patch.setattr(claude_parallel, "workers_for", lambda sizes: workers)
        patch.setattr(claude_parallel, "sum_claude", counted)
        table = load_price_table(None)
        sums, warnings = sources.claude_hour_sums(Home(home) if home else None, table, _env(config))
    assert gc.isenabled()
    return sums.blocks(NOW), warnings, len(calls)


def _same(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        # Costs are float sums taken in another order: equal to the last bits only.
        assert {k: v for k, v in mine.items() if k != "costUSD"} == {
            k: v for k, v in theirs.items() if k != "costUSD"
        }
        assert mine["costUSD"] == pytest.approx(theirs["costUSD"], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("workers", [2, 3])
def test_worker_blocks_equal_the_one_process_blocks_cold_and_warm(
    logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    serial, serial_warnings, forks = _blocks(logs, None, monkeypatch, 1)
    assert forks == 0
    entries = sources.load_claude_entries(None, _env(logs)).rows
    assert_blocks_match(serial, reference_blocks(entries, load_price_table(None)))
    assert any("malformed" in text for text in serial_warnings)
    home = tmp_path / "home"
    cold, warnings, forks = _blocks(logs, home, monkeypatch, workers)
    assert forks == 1 and warnings == serial_warnings
    _same(cold, serial)
    assert (home / "tmp" / "token-index" / "claude.marshal").exists()
    # From the index the workers wrote: every file is cached, so nothing forks.
    warm, warnings, forks = _blocks(logs, home, monkeypatch, workers)
    assert warnings == serial_warnings
    _same(warm, serial)


def test_blocks_fall_back_to_one_process_when_a_worker_fails(
    logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    shutil.copytree(logs, config)
    parent = os.getpid()
    real_finish = claude_parallel._Share.finish

    def finish(self: Any, contested: Any) -> Any:
        if os.getpid() != parent:
            raise RuntimeError("worker broke")
        return real_finish(self, contested)

    serial, _, _ = _blocks(config, None, monkeypatch, 1)
    monkeypatch.setattr(claude_parallel._Share, "finish", finish)
    broken, _, forks = _blocks(config, tmp_path / "home", monkeypatch, 2)
    assert forks == 1
    _same(broken, serial)


def test_the_models_of_a_block_are_in_the_order_of_their_first_request() -> None:
    """Two models first seen at the same millisecond: the one read first comes first, in
    one process and when the entries are summed in two processes and merged."""
    table = PriceTable.bundled()
    ts = 1_772_762_400_000
    sonnet = (ts, "s", None, None, False, MODELS[1], 1, 1, 0, 0, 0, None)
    opus = (ts, "s", None, None, False, MODELS[0], 1, 1, 0, 0, 0, None)
    later_opus = (ts - 5, "s", None, None, False, MODELS[0], 1, 1, 0, 0, 0, None)
    assert build_blocks([sonnet, opus], table, NOW)[0]["models"] == [MODELS[1], MODELS[0]]
    assert build_blocks([opus, sonnet], table, NOW)[0]["models"] == [MODELS[0], MODELS[1]]
    assert build_blocks([sonnet, later_opus], table, NOW)[0]["models"] == [MODELS[0], MODELS[1]]
    from aiswitch.tokens.blocks import HourSums

    # Two shares: the second one's entries come later in the file order. Whichever share is
    # merged first, a model's first request is the earliest in the file order.
    first, second = HourSums(table), HourSums(table)
    first.add_entries([opus], lambda at: at)
    second.add_entries([sonnet, opus], lambda at: (1 << 32) + at)
    for shares in ([first, second], [second, first]):
        total = HourSums(table)
        for share in shares:
            total.merge(share.sums())
        assert total.blocks(NOW)[0]["models"] == [MODELS[0], MODELS[1]]
    # Entries added after a merge (the contested ones) are placed by their order too.
    total = HourSums(table)
    total.merge(second.sums())
    total.add_entries([opus], lambda at: at)
    assert total.blocks(NOW)[0]["models"] == [MODELS[0], MODELS[1]]
    total = HourSums(table)
    total.merge(first.sums())
    total.add_entries([sonnet, opus], lambda at: (1 << 32) + at)
    assert total.blocks(NOW)[0]["models"] == [MODELS[0], MODELS[1]]
    assert claude.E_TS == 0  # the position HourSums reads an entry's time at
