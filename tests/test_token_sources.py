"""Readers of the ledger and of the CLIs' own logs, and the incremental index under them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from aiswitch.errors import UsageError
from aiswitch.home import Home
from aiswitch.tokens.index import FileIndex
from aiswitch.tokens.records import LedgerRecord
from aiswitch.tokens.report_options import parse_report_options
from aiswitch.tokens.rows import record_from_row
from aiswitch.tokens.sources import (
    load_records,
    load_rows,
    parse_ledger_bytes,
    report_for_source,
)
from aiswitch.tokens.sources.claude import claude_roots, session_from_path
from aiswitch.tokens.sources.codex import parse_codex_bytes
from aiswitch.tokens.sources.gemini import parse_gemini_bytes


def _jsonl(objs: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(obj, separators=(",", ":")) for obj in objs) + "\n").encode()


# --- Claude ---------------------------------------------------------------------------


def test_claude_config_dir_takes_a_comma_separated_list_and_the_projects_dir_itself(
    tmp_path: Path,
) -> None:
    first, second, empty = tmp_path / "one", tmp_path / "two", tmp_path / "none"
    (first / "projects").mkdir(parents=True)
    (second / "projects").mkdir(parents=True)
    empty.mkdir()
    env = {"CLAUDE_CONFIG_DIR": f"{first}, {second / 'projects'},{empty}"}
    assert claude_roots(env) == [first, second]


def test_claude_defaults_are_the_xdg_config_dir_then_dot_claude(tmp_path: Path) -> None:
    (tmp_path / ".claude" / "projects").mkdir(parents=True)
    (tmp_path / "xdg" / "claude" / "projects").mkdir(parents=True)
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert claude_roots(env) == [tmp_path / "xdg" / "claude", tmp_path / ".claude"]


def test_a_claude_session_is_the_file_name_or_the_folder_above_subagents() -> None:
    assert session_from_path(Path("/c/projects/p/abc.jsonl")) == "abc"
    assert session_from_path(Path("/c/projects/p/abc/subagents/agent-1.jsonl")) == "abc"


def test_claude_lines_become_rows_with_buckets_and_reported_cost(tmp_path: Path) -> None:
    config = tmp_path / "claude"
    path = config / "projects" / "p" / "s.jsonl"
    path.parent.mkdir(parents=True)
    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_input_tokens": 7,
        "cache_creation_input_tokens": 99,
        "cache_creation": {"ephemeral_5m_input_tokens": 20, "ephemeral_1h_input_tokens": 30},
    }
    path.write_bytes(
        _jsonl(
            [
                {"type": "user", "timestamp": "2026-01-01T00:00:00Z", "message": {}},
                {
                    "timestamp": "2026-01-01T00:00:01Z",
                    "requestId": "r",
                    "costUSD": 0.5,
                    "message": {"id": "m", "model": "claude-haiku-4-5", "usage": usage},
                },
            ]
        )
    )
    [record] = load_records(
        "claude", Home(tmp_path / "h"), {"CLAUDE_CONFIG_DIR": str(config)}, use_index=False
    )
    assert (record.input_tokens, record.output_tokens) == (10, 5)
    assert (record.cache_read_tokens, record.cache_write_tokens) == (7, 50)
    assert record.session_id == "s" and record.source == "claude" and record.agent == "claude"
    assert (record.cost_usd, record.cost_source) == (0.5, "reported")


# --- Codex ----------------------------------------------------------------------------


def _token_count(ts: str, total: list[int] | None, last: list[int] | None) -> dict[str, Any]:
    def usage(values: list[int] | None) -> dict[str, int] | None:
        if values is None:
            return None
        names = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")
        return dict(zip(names, values, strict=True))

    info = {"total_token_usage": usage(total), "last_token_usage": usage(last)}
    return {
        "timestamp": ts,
        "type": "event_msg",
        "payload": {"type": "token_count", "info": {k: v for k, v in info.items() if v}},
    }


def test_codex_running_totals_become_per_request_usage_with_cached_tokens_moved_out() -> None:
    data = (
        _jsonl(
            [
                {
                    "timestamp": "2026-01-01T00:00:00Z",
                    "type": "session_meta",
                    "payload": {"id": "S"},
                },
                {
                    "timestamp": "2026-01-01T00:00:00Z",
                    "type": "turn_context",
                    "payload": {"model": "gpt-5-codex"},
                },
                _token_count("2026-01-01T00:00:01Z", [100, 40, 10, 4], [100, 40, 10, 4]),
                _token_count("2026-01-01T00:00:02Z", [100, 40, 10, 4], [100, 40, 10, 4]),  # repeat
                _token_count("2026-01-01T00:00:03Z", [250, 100, 30, 4], None),  # difference
                {
                    "timestamp": "2026-01-01T00:00:04Z",
                    "type": "event_msg",
                    "payload": {"type": "token_count", "info": None},
                },
                _token_count("2026-01-01T00:00:05Z", [50, 0, 5, 0], None),  # reset: all new
            ]
        )
        + b"{broken\n"
    )
    raw, malformed = parse_codex_bytes(data, "path-session")
    rows = [record_from_row(row) for row in raw]
    assert malformed == 1
    assert [
        (r.input_tokens, r.cache_read_tokens, r.output_tokens, r.reasoning_tokens) for r in rows
    ] == [(60, 40, 10, 4), (90, 60, 20, 0), (50, 0, 5, 0)]
    assert {r.model for r in rows} == {"gpt-5-codex"}
    assert {r.session_id for r in rows} == {"S"}


def test_a_codex_event_without_any_model_is_left_unpriced_not_guessed() -> None:
    rows, _ = parse_codex_bytes(
        _jsonl([_token_count("2026-01-01T00:00:01Z", [10, 0, 1, 0], [10, 0, 1, 0])]), "s"
    )
    assert record_from_row(rows[0]).model is None


# --- Gemini ---------------------------------------------------------------------------


def test_gemini_chat_documents_are_normalised_cached_out_of_input_and_thoughts_into_output(
    tmp_path: Path,
) -> None:
    doc = {
        "sessionId": "G",
        "startTime": "2026-01-01T00:00:00Z",
        "messages": [
            {"id": "u1", "type": "user", "content": "hi"},
            {
                "id": "g1",
                "type": "gemini",
                "timestamp": "2026-01-01T00:00:05Z",
                "model": "gemini-2.5-pro",
                "tokens": {
                    "input": 100,
                    "output": 20,
                    "cached": 30,
                    "thoughts": 7,
                    "tool": 3,
                    "total": 130,
                },
            },
        ],
    }
    rows, malformed = parse_gemini_bytes(json.dumps(doc).encode(), tmp_path / "session-1.json")
    assert malformed == 0
    [row] = [record_from_row(raw) for raw in rows]
    assert (row.input_tokens, row.cache_read_tokens) == (73, 30)
    assert (row.output_tokens, row.reasoning_tokens) == (27, 7)
    assert (row.session_id, row.message_id, row.model) == ("G", "g1", "gemini-2.5-pro")


def test_gemini_jsonl_messages_rewritten_under_one_id_count_once(tmp_path: Path) -> None:
    base = {"type": "gemini", "id": "g1", "timestamp": "2026-01-01T00:00:05Z"}
    data = _jsonl(
        [
            {"sessionId": "G", "startTime": "2026-01-01T00:00:00Z"},
            {**base, "tokens": {"input": 10, "output": 1}},
            {**base, "tokens": {"input": 10, "output": 9}},
        ]
    )
    raw, _ = parse_gemini_bytes(data, tmp_path / "session-1.jsonl")
    rows = [record_from_row(row) for row in raw]
    assert [(r.input_tokens, r.output_tokens) for r in rows] == [(10, 9)]


def test_gemini_files_are_found_under_tmp_project_chats(tmp_path: Path) -> None:
    chats = tmp_path / "gem" / "tmp" / "abc123" / "chats"
    chats.mkdir(parents=True)
    doc = {
        "sessionId": "G",
        "messages": [
            {
                "type": "gemini",
                "timestamp": "2026-01-01T00:00:00Z",
                "tokens": {"input": 5, "output": 1},
            }
        ],
    }
    (chats / "session-2026-01-01T00-00-abc.json").write_text(json.dumps(doc))
    loaded = load_rows("gemini", Home(tmp_path / "h"), {"GEMINI_DATA_DIR": str(tmp_path / "gem")})
    assert [row[10] for row in loaded.rows] == [5]


# --- Ledger and index -------------------------------------------------------------------


def _record(n: int, **fields: Any) -> str:
    return LedgerRecord(
        input_tokens=n, output_tokens=1, model="gpt-4.1", **fields
    ).model_dump_json()


def test_malformed_ledger_lines_and_a_torn_last_line_are_counted_never_fatal(
    tmp_path: Path,
) -> None:
    home = Home(tmp_path / "home").ensure()
    home.ledger.write_text(_record(1) + "\nnot json\n" + _record(2) + '\n{"ts": "2026-01-')
    loaded = load_rows("aiswitch", home)
    assert [row[10] for row in loaded.rows] == [1, 2]
    assert len(loaded.warnings) == 1
    assert "skipped 2 malformed line(s)" in loaded.warnings[0]
    assert "unterminated last line" in loaded.warnings[0]


def test_malformed_lines_in_many_files_name_three_files_then_sum_the_rest(
    tmp_path: Path,
) -> None:
    project = tmp_path / "claude" / "projects" / "p"
    project.mkdir(parents=True)
    for index in range(6):  # file i holds i + 1 torn usage lines
        (project / f"s{index}.jsonl").write_text('{"usage":{"input_tokens":\n' * (index + 1))
    env = {"CLAUDE_CONFIG_DIR": str(project.parent)}
    loaded = load_rows("claude", Home(tmp_path / "home"), env)
    assert loaded.warnings == [
        f"claude: skipped 1 malformed line(s) in {project / 's0.jsonl'}",
        f"claude: skipped 2 malformed line(s) in {project / 's1.jsonl'}",
        f"claude: skipped 3 malformed line(s) in {project / 's2.jsonl'}",
        "claude: skipped 15 more malformed line(s) in 3 more file(s)",
    ]


def test_ledger_lines_of_the_wrong_shape_count_as_malformed() -> None:
    rows, malformed = parse_ledger_bytes(
        b'{"ts":"2026-01-01T00:00:00Z","input_tokens":-1}\n[1]\n{"input_tokens":1}\n'
    )
    assert rows == [] and malformed == 3


def test_an_unknown_source_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown --source 'cursor'"):
        load_rows("cursor", Home(tmp_path))


def _count_parse(calls: list[bytes]) -> Any:
    def parse(data: bytes) -> tuple[list[Any], int]:
        calls.append(data)
        return [(line,) for line in data.split(b"\n") if line], 0

    return parse


def test_the_index_reads_only_appended_bytes_of_an_unchanged_prefix(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"a\nb\n")
    calls: list[bytes] = []
    for _ in range(2):  # the second read of the unchanged file parses nothing
        index = FileIndex(home, "t")
        index.read_appendable(path, _count_parse(calls))
        index.save()
    with path.open("ab") as handle:
        handle.write(b"c\n")
    read = FileIndex(home, "t").read_appendable(path, _count_parse(calls))
    assert calls == [b"a\nb\n", b"c\n"]
    assert read.items == [(b"a",), (b"b",), (b"c",)]


def test_the_index_rereads_a_file_that_shrank_or_was_rewritten(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"aaaa\nbbbb\n")
    calls: list[bytes] = []
    index = FileIndex(home, "t")
    index.read_appendable(path, _count_parse(calls))
    index.save()
    path.write_bytes(b"zz\n")  # truncated and rewritten
    assert FileIndex(home, "t").read_appendable(path, _count_parse(calls)).items == [(b"zz",)]
    index = FileIndex(home, "t")
    index.read_appendable(path, _count_parse(calls))
    index.save()
    path.write_bytes(b"yy\nxxxx\n")  # rewritten and grown: the old prefix no longer matches
    assert FileIndex(home, "t").read_appendable(path, _count_parse(calls)).items == [
        (b"yy",),
        (b"xxxx",),
    ]


def test_an_unterminated_last_line_counts_but_is_reread_once_it_grows(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"a\npart")
    index = FileIndex(home, "t")
    assert index.read_appendable(path, _count_parse([])).items == [(b"a",), (b"part",)]
    index.save()
    with path.open("ab") as handle:
        handle.write(b"ial\n")
    assert FileIndex(home, "t").read_appendable(path, _count_parse([])).items == [
        (b"a",),
        (b"partial",),
    ]


def test_a_corrupt_index_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"a\n")
    index = FileIndex(home, "t")
    index.read_appendable(path, _count_parse([]))
    index.save()
    assert index.path is not None
    index.path.write_bytes(b"\x00garbage")
    assert FileIndex(home, "t").read_appendable(path, _count_parse([])).items == [(b"a",)]


def test_parts_adopted_from_workers_are_saved_unread_and_fresher_entries_override_them(
    tmp_path: Path,
) -> None:
    import marshal

    home = Home(tmp_path / "home")
    paths = [tmp_path / f"{name}.jsonl" for name in "abc"]
    for path in paths:
        path.write_bytes(path.stem.encode() + b"\n")
    worker = FileIndex(None, "t")  # what a worker read: files b and c
    for path in paths[1:]:
        worker.read_appendable(path, _count_parse([]))
    part = marshal.dumps(worker.entries)
    index = FileIndex(home, "t")
    index.read_appendable(paths[0], _count_parse([]))
    index.adopt(part, [str(path) for path in paths[1:]])
    index.save()
    calls: list[bytes] = []
    again = FileIndex(home, "t")
    assert [again.read_appendable(path, _count_parse(calls)).items for path in paths] == [
        [(b"a",)],
        [(b"b",)],
        [(b"c",)],
    ]
    assert calls == []  # every file came from the saved index, adopted parts included
    # A file read again after a part was adopted: the fresher entry wins on the next load.
    paths[2].write_bytes(b"z\n")
    again.read_appendable(paths[2], _count_parse(calls))
    again.adopt(part, [str(paths[1])])
    again.save()
    assert FileIndex(home, "t").read_appendable(paths[2], _count_parse(calls)).items == [(b"z",)]
    assert calls == [b"z\n"]


def test_a_cached_report_is_not_reused_after_the_ledger_grows(tmp_path: Path) -> None:
    home = Home(tmp_path / "home").ensure()
    home.ledger.write_text(_record(1, ts="2026-01-01T00:00:00Z") + "\n")
    options = parse_report_options(by="day", timezone="UTC")
    first = report_for_source("aiswitch", home, options, env={})
    with home.ledger.open("a") as handle:
        handle.write(_record(10, ts="2026-01-02T00:00:00Z") + "\n")
    os.utime(home.ledger)
    second = report_for_source("aiswitch", home, options, env={})
    assert first.totals["input_tokens"] == 1
    assert second.totals["input_tokens"] == 11
    assert [row["day"] for row in second.rows] == ["2026-01-01", "2026-01-02"]
