"""`aiswitch mcp` as a real process, driven by the official MCP SDK's client over stdio (and,
for what a client library never sends, by hand): the revisions (2026-07-28 through
`server/discover`, the `initialize` handshake), the tools and their schemas, runs of mock
agents, progress, cancellation, bad input and the end of stdin. The tools are driven on
2026-07-28 (the SDK's default connection); the key ones on the handshake revision too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import mcp_types
import psutil
import pytest
from mcp import Client
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters
from support.cli import aiswitch_bin, run_cli
from test_workspaces import GIT_IDENTITY, make_repo, writers

from aiswitch.cli.mcp_server.wire import HANDSHAKE_VERSIONS
from aiswitch.home import Home

pytestmark = pytest.mark.timeout(90)
CLIENT = mcp_types.Implementation(name="test-client", version="1.0")
# Children of a cancelled run are stopped (shutdown, SIGTERM, then SIGKILL: bounds that add up
# to ~4 s at worst, more on a loaded machine) within this; how fast is a benchmark's matter.
CHILDREN_GONE_S = 20.0


# The SDK client's connection modes: "auto" probes `server/discover` (2026-07-28) and
# would fall back to `initialize`; "legacy" goes through `initialize` only.
MODERN = "2026-07-28"
MODES = ["auto", "legacy"]


@contextlib.asynccontextmanager
async def connect(
    env: dict[str, str], *args: str, mode: str = "auto"
) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=aiswitch_bin(), args=["mcp", *args], env=env)
    async with Client(params, client_info=CLIENT, mode=mode) as client:  # type: ignore[arg-type]
        # No fallback on "auto": the connection is on the current revision.
        assert client.protocol_version == (MODERN if mode == "auto" else HANDSHAKE_VERSIONS[0])
        yield client.session


def text_of(result: mcp_types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, mcp_types.TextContent))


def assert_one_sentence_error(result: mcp_types.CallToolResult, *words: str) -> None:
    assert result.is_error, result
    text = text_of(result)
    assert "\n" not in text and "Traceback" not in text
    for word in words:
        assert word in text, text


def server_process() -> psutil.Process:
    """The `aiswitch mcp` child of this test process (the SDK's client started it)."""
    (proc,) = [p for p in psutil.Process().children() if "mcp" in " ".join(p.cmdline()[1:3])]
    return proc


async def test_the_sdk_client_speaks_2026_07_28_through_discover_without_fallback(
    env: dict[str, str],
) -> None:
    async with connect(env) as session:
        assert session.protocol_version == MODERN
        assert session.initialize_result is None  # no handshake was made
        discovered = session.discover_result
        assert discovered is not None
        assert discovered.supported_versions == [MODERN]
        assert discovered.capabilities.tools is not None
        assert discovered.instructions and "run" in discovered.instructions
        server = session.server_info  # the serverInfo stamp in the result's _meta
        assert server is not None and server.name == "aiswitch"


async def test_initialize_negotiates_the_handshake_revision_and_names_the_server(
    env: dict[str, str],
) -> None:
    async with connect(env, mode="legacy") as session:
        assert session.discover_result is None
        result = session.initialize_result
        assert result is not None
        assert result.protocol_version == "2025-11-25"
        assert result.server_info.name == "aiswitch"
        assert result.capabilities.tools is not None


@pytest.mark.parametrize("mode", MODES)
async def test_the_tools_are_listed_with_valid_input_and_output_schemas(
    env: dict[str, str], mode: str
) -> None:
    async with connect(env, mode=mode) as session:
        listed = (await session.list_tools()).tools

    names = {tool.name for tool in listed}
    assert names == {
        "run",
        "run_start",
        "run_status",
        "run_result",
        "run_cancel",
        "agents",
        "diff",
        "compare",
        "tokens_report",
    }  # no apply without --allow-apply
    for tool in listed:
        assert tool.description and len(tool.description) > 40
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None and tool.output_schema["type"] == "object"
        jsonschema.Draft202012Validator.check_schema(tool.input_schema)
        jsonschema.Draft202012Validator.check_schema(tool.output_schema)
    run = next(tool for tool in listed if tool.name == "run")
    assert run.input_schema["required"] == ["task", "agents"]


async def test_apply_is_offered_only_with_allow_apply(env: dict[str, str]) -> None:
    async with connect(env, "--allow-apply") as session:
        listed = (await session.list_tools()).tools
    assert "apply" in {tool.name for tool in listed}


@pytest.mark.parametrize("mode", MODES)
async def test_run_of_two_agents_in_parallel_returns_both_results_and_progress(
    home: Home, env: dict[str, str], mode: str
) -> None:
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    async with connect(env, mode=mode) as session:
        arguments = {"task": "say hi", "agents": ["mock", "mock@fast"]}
        result = await session.call_tool("run", arguments, progress_callback=on_progress)

    assert not result.is_error, text_of(result)
    document = result.structured_content
    assert document["mode"] == "parallel"
    assert [(r["agent_id"], r["status"]) for r in document["results"]] == [
        ("mock#1", "ok"),
        ("mock#2", "ok"),
    ]
    assert all(r["output"] for r in document["results"])
    assert document["caller"] == "test-client/1.0"
    # The very document `aiswitch run --json` prints, as the run's file holds it.
    shown = run_cli("runs", "show", document["run_id"], "--json", env=env)
    assert shown.json() == document
    text = text_of(result)
    assert document["run_id"] in text and document["results"][0]["output"][:20] in text
    # Progress counted up, one per event, and named the agents.
    values = [value for value, _ in progress]
    assert values == sorted(values) and len(values) >= 4
    assert any("mock#2 ok" in (message or "") for _, message in progress)
    # The ledger names the caller on each of the run's records.
    records = [json.loads(line) for line in home.ledger.read_text().splitlines()]
    assert {r["caller"] for r in records if r["run_id"] == document["run_id"]} == {
        "test-client/1.0"
    }


@pytest.mark.parametrize("mode", MODES)
async def test_a_cancelled_run_call_stops_the_runs_children(env: dict[str, str], mode: str) -> None:
    running = anyio.Event()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        if message and "running" in message:
            running.set()

    async with connect({**env, "MOCK_HANG": "1"}, mode=mode) as session:
        server = server_process()
        children: list[psutil.Process] = []
        async with anyio.create_task_group() as group:

            async def call() -> None:
                await session.call_tool(
                    "run", {"task": "hang", "agents": ["mock"]}, progress_callback=on_progress
                )

            group.start_soon(call)
            await running.wait()
            children = server.children(recursive=True)
            assert children, "the run has an agent process"
            group.cancel_scope.cancel()  # the SDK sends notifications/cancelled
        _gone, alive = await asyncio.to_thread(psutil.wait_procs, children, timeout=CHILDREN_GONE_S)
        assert alive == []
        # The server keeps serving.
        assert (await session.list_tools()).tools


async def test_run_start_then_status_then_result(env: dict[str, str]) -> None:
    async with connect(env) as session:
        started = await session.call_tool("run_start", {"task": "hi", "agents": ["mock@fast"]})
        assert not started.is_error, text_of(started)
        run_id = started.structured_content["run_id"]
        status = await session.call_tool("run_status", {"run_id": run_id})
        assert not status.is_error, text_of(status)
        assert status.structured_content["run_id"] == run_id
        assert status.structured_content["status"] in ("running", "ok")
        result = await session.call_tool("run_result", {"run_id": run_id, "wait_s": 60})

    assert not result.is_error, text_of(result)
    assert result.structured_content["run_id"] == run_id
    assert result.structured_content["status"] == "ok"
    assert result.structured_content["results"][0]["agent_id"] == "mock#1"


async def test_run_cancel_cancels_a_started_run(env: dict[str, str]) -> None:
    async with connect({**env, "MOCK_HANG": "1"}) as session:
        started = await session.call_tool("run_start", {"task": "hang", "agents": ["mock"]})
        run_id = started.structured_content["run_id"]
        cancelled = await session.call_tool("run_cancel", {"run_id": run_id})
        assert not cancelled.is_error, text_of(cancelled)
        assert cancelled.structured_content == {"run_id": run_id, "status": "cancelled"}
        result = await session.call_tool("run_result", {"run_id": run_id})
        assert result.structured_content["status"] == "cancelled"


async def test_agents_lists_agents_and_presets_but_no_secret(
    home: Home, env: dict[str, str]
) -> None:
    secret = "sk-mcp-agents-secret-0000000000000000"
    added = run_cli("preset", "add", "mine", "--agent", "mock", f"OPENAI_API_KEY={secret}", env=env)
    assert added.code == 0, added.stderr
    async with connect(env, "--agents", "mock,mock@fast") as session:
        result = await session.call_tool("agents", {})

    assert not result.is_error, text_of(result)
    document = result.structured_content
    agents = {a["name"]: a for a in document["agents"]}
    assert agents["mock"]["installed"] and agents["mock"]["allowed"]
    assert not agents["codex"]["allowed"]
    assert "mine" in {p["name"] for p in document["presets"]}
    assert secret not in json.dumps(document) and secret not in text_of(result)


BAD_RUN_ARGUMENTS: list[tuple[dict[str, Any], list[str]]] = [
    ({"task": "hi", "agents": ["nosuch"]}, ["unknown agent 'nosuch'"]),
    ({"task": "hi", "agents": ["mock@nosuchpreset"]}, ["nosuchpreset"]),
    ({"task": "  ", "agents": ["mock"]}, ["task is empty"]),
    ({"task": "hi", "agents": ["mock"], "budget_usd": 0}, ["budget_usd"]),
    ({"task": "hi", "agents": ["mock"], "permissions": "full"}, ["above this server's cap"]),
    ({"task": "hi", "agents": []}, ["agents"]),
    ({"task": "hi"}, ["agents"]),
    ({"task": "hi", "agents": ["mock"], "mode": "sideways"}, ["mode"]),
    ({"task": "hi", "agents": ["mock"], "bogus": 1}, ["bogus"]),
    ({"task": "hi", "agents": ["mock"], "timeout": -1}, ["timeout"]),
]


async def test_bad_run_arguments_are_tool_errors_of_one_sentence(env: dict[str, str]) -> None:
    async with connect(env) as session:
        for arguments, words in BAD_RUN_ARGUMENTS:
            for tool in ("run", "run_start"):
                assert_one_sentence_error(await session.call_tool(tool, arguments), *words)
        # Nothing was started by any of them.
        assert run_cli("runs", "list", "--json", env=env).json() == {"runs": []}


async def test_an_agent_outside_the_allow_list_is_refused(env: dict[str, str]) -> None:
    async with connect(env, "--agents", "mock@fast") as session:
        refused = await session.call_tool("run", {"task": "hi", "agents": ["mock"]})
        allowed = await session.call_tool("run", {"task": "hi", "agents": ["mock@fast"]})
    assert_one_sentence_error(refused, "not allowed", "mock@fast")
    assert not allowed.is_error, text_of(allowed)


async def test_an_unknown_run_id_is_a_tool_error(env: dict[str, str]) -> None:
    async with connect(env) as session:
        for tool in ("run_status", "run_result", "run_cancel", "diff", "compare"):
            result = await session.call_tool(tool, {"run_id": "20990101-000000-abcdef"})
            assert_one_sentence_error(result, "20990101-000000-abcdef")


async def test_parallel_writers_get_worktrees_then_diff_compare_apply_and_report(
    tmp_path: Path, home: Home, env: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    writers(
        home,
        {
            "w1": {"MOCK_WRITE": json.dumps({"a.txt": "from w1\n"})},
            "w2": {"MOCK_WRITE": json.dumps({"a.txt": "from w2\n", "b.txt": "more\n"})},
        },
    )
    genv = {**env, **GIT_IDENTITY}
    async with connect(genv, "--allow-apply") as session:
        run = await session.call_tool(
            "run", {"task": "write", "agents": ["w1", "w2"], "cwd": str(repo)}
        )
        assert not run.is_error, text_of(run)
        run_id = run.structured_content["run_id"]
        modes = {r["workspace"]["mode"] for r in run.structured_content["results"]}
        assert modes == {"worktree"}
        assert "1 files +1 -0" in text_of(run) and "2 files +2 -0" in text_of(run)

        diff = await session.call_tool("diff", {"run_id": run_id, "agent_id": "w1#1"})
        assert not diff.is_error, text_of(diff)
        (item,) = diff.structured_content["diffs"]
        assert item["agent_id"] == "w1#1" and "+from w1" in item["diff"]
        assert not item["truncated"]

        compare = await session.call_tool("compare", {"run_id": run_id})
        cli = run_cli("compare", run_id, "--json", env=genv)
        assert compare.structured_content == cli.json()

        applied = await session.call_tool("apply", {"run_id": run_id, "agent_id": "w2#1"})
        assert not applied.is_error, text_of(applied)
        assert applied.structured_content["files"] == 2
        assert (repo / "b.txt").read_text() == "more\n"

        report = await session.call_tool("tokens_report", {"by": "caller,agent"})
        assert not report.is_error, text_of(report)
        rows = report.structured_content["rows"]
        assert {(r["caller"], r["agent"]) for r in rows} == {
            ("test-client/1.0", "w1"),
            ("test-client/1.0", "w2"),
        }


async def test_one_agent_in_a_repository_edits_a_worktree_not_the_checkout(
    tmp_path: Path, home: Home, env: dict[str, str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    writers(home, {"w1": {"MOCK_WRITE": json.dumps({"a.txt": "from w1\n"})}})
    genv = {**env, **GIT_IDENTITY}
    async with connect(genv) as session:
        run = await session.call_tool("run", {"task": "write", "agents": ["w1"], "cwd": str(repo)})
    assert not run.is_error, text_of(run)
    (result,) = run.structured_content["results"]
    assert result["workspace"]["mode"] == "worktree"
    assert not (repo / "a.txt").exists()
    assert (Path(result["workspace"]["root"]) / "a.txt").read_text() == "from w1\n"


async def test_a_diff_of_a_run_without_workspaces_is_a_tool_error(env: dict[str, str]) -> None:
    async with connect(env) as session:
        run = await session.call_tool("run", {"task": "hi", "agents": ["mock@fast"]})
        run_id = run.structured_content["run_id"]
        result = await session.call_tool("diff", {"run_id": run_id})
    assert_one_sentence_error(result, run_id)


async def test_a_server_nested_too_deep_starts_no_run(env: dict[str, str]) -> None:
    async with connect({**env, "AISWITCH_MCP_DEPTH": "2"}) as session:
        result = await session.call_tool("run", {"task": "hi", "agents": ["mock"]})
    assert_one_sentence_error(result, "nested 2 deep")


async def test_agents_started_through_the_server_are_one_level_deeper(
    env: dict[str, str],
) -> None:
    async with connect({**env, "MOCK_DUMP_ENV": "1", "AISWITCH_MCP_DEPTH": "1"}) as session:
        result = await session.call_tool("run", {"task": "env", "agents": ["mock"]})
    assert not result.is_error, text_of(result)
    child_env = json.loads(result.structured_content["results"][0]["output"])
    assert child_env["AISWITCH_MCP_DEPTH"] == "2"


async def test_a_run_cancelled_from_a_terminal_answers_its_call_as_cancelled(
    env: dict[str, str],
) -> None:
    running = anyio.Event()
    run_ids: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        if message and "running" in message:
            running.set()

    async with connect({**env, "MOCK_HANG": "1"}) as session, anyio.create_task_group() as group:
        answers: list[mcp_types.CallToolResult] = []

        async def call() -> None:
            answers.append(
                await session.call_tool(
                    "run", {"task": "hang", "agents": ["mock"]}, progress_callback=on_progress
                )
            )

        group.start_soon(call)
        await running.wait()
        listed = await asyncio.to_thread(run_cli, "runs", "list", "--json", env=env)
        run_ids = [entry["run_id"] for entry in listed.json()["runs"]]
        cancelled = await asyncio.to_thread(run_cli, "runs", "cancel", run_ids[0], env=env)
        assert cancelled.code == 0, cancelled.stderr

    (answer,) = answers
    assert not answer.is_error, text_of(answer)
    assert answer.structured_content["run_id"] == run_ids[0]
    assert answer.structured_content["status"] == "cancelled"


async def test_the_session_budget_stops_runs_once_spent(env: dict[str, str]) -> None:
    async with connect({**env, "MOCK_COST_USD": "0.5"}, "--budget-usd", "0.4") as session:
        first = await session.call_tool("run", {"task": "hi", "agents": ["mock@fast"]})
        second = await session.call_tool("run", {"task": "hi", "agents": ["mock@fast"]})
    assert not first.is_error, text_of(first)
    assert_one_sentence_error(second, "budget")


async def test_runs_started_side_by_side_cannot_pass_the_session_budget_together(
    env: dict[str, str],
) -> None:
    """Each task reports $0.3 as it starts, then runs until it is stopped: two runs of two
    tasks spend $1.2 together against a session budget of $1. Each alone stays under $1
    (before, both then ran on and never ended); the session stops both once their sum
    reaches it, whichever order their usage comes in."""
    hanging = {**env, "MOCK_COST_USD": "0.3", "MOCK_USAGE_EARLY": "1", "MOCK_HANG": "1"}
    two = {"task": "spend", "agents": ["mock@fast", "mock@fast"]}
    async with connect(hanging, "--budget-usd", "1") as session:
        started = [await session.call_tool("run_start", two) for _ in range(2)]
        run_ids = [answer.structured_content["run_id"] for answer in started]
        ended = [
            await session.call_tool("run_result", {"run_id": run_id, "wait_s": 60})
            for run_id in run_ids
        ]
        third = await session.call_tool("run_start", two)
        agents = await session.call_tool("agents", {})
    documents = [answer.structured_content for answer in ended]
    assert [d["status"] for d in documents] == ["budget_exceeded"] * 2, [text_of(a) for a in ended]
    # Every task's usage once: what the session spent is what its runs recorded.
    assert sum(d["cost_usd"] for d in documents) == pytest.approx(1.2)
    reasons = {r["error"] for d in documents for r in d["results"]}
    assert any("budget" in (reason or "") for reason in reasons), reasons
    assert_one_sentence_error(third, "budget")
    assert agents.structured_content["budget_usd_left"] == 0


# -- by hand: what a client library never sends -------------------------------------------


class RawServer:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [aiswitch_bin(), "mcp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    def send(self, line: bytes | dict[str, Any]) -> None:
        data = line if isinstance(line, bytes) else json.dumps(line).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(data + b"\n")
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def ask(self, line: bytes | dict[str, Any]) -> dict[str, Any]:
        self.send(line)
        return self.read()


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}


def test_malformed_json_rpc_gets_protocol_errors_and_the_server_keeps_serving(
    env: dict[str, str],
) -> None:
    server = RawServer(env)
    try:
        assert server.ask(INITIALIZE)["result"]["protocolVersion"] == "2025-06-18"
        assert server.ask(b"{not json")["error"]["code"] == -32700
        assert server.ask({"jsonrpc": "2.0", "id": 1})["error"]["code"] == -32600
        assert server.ask({"jsonrpc": "2.0", "id": 2, "method": "nope"})["error"]["code"] == -32601
        wrong = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"arguments": {}}}
        assert server.ask(wrong)["error"]["code"] == -32602
        unknown = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "x"}}
        assert server.ask(unknown)["error"]["code"] == -32602
        old = {**INITIALIZE, "id": 5, "params": {**INITIALIZE["params"], "protocolVersion": "1999"}}  # type: ignore[dict-item]
        assert server.ask(old)["result"]["protocolVersion"] == HANDSHAKE_VERSIONS[0]
        assert server.ask({"jsonrpc": "2.0", "id": 6, "method": "ping"}) == {
            "jsonrpc": "2.0",
            "id": 6,
            "result": {},
        }
    finally:
        assert server.proc.stdin is not None
        server.proc.stdin.close()
        assert server.proc.wait(timeout=30) == 0


def envelope(version: Any, **more: Any) -> dict[str, Any]:
    """A 2026-07-28 request's `_meta`: the protocol version and the client's capabilities."""
    return {
        "_meta": {
            mcp_types.PROTOCOL_VERSION_META_KEY: version,
            mcp_types.CLIENT_CAPABILITIES_META_KEY: {},
            mcp_types.CLIENT_INFO_META_KEY: {"name": "raw", "version": "2"},
        },
        **more,
    }


def test_a_request_naming_an_unserved_revision_gets_32022_with_the_supported_list(
    env: dict[str, str],
) -> None:
    server = RawServer(env)
    try:
        for i, method in enumerate(("server/discover", "tools/list")):
            answer = server.ask(
                {"jsonrpc": "2.0", "id": i, "method": method, "params": envelope("2099-01-01")}
            )
            assert answer["error"]["code"] == mcp_types.UNSUPPORTED_PROTOCOL_VERSION == -32022
            data = mcp_types.UnsupportedProtocolVersionErrorData.model_validate(
                answer["error"]["data"]
            )
            assert data.supported == ["2026-07-28"] and data.requested == "2099-01-01"
        # A handshake revision is not one a request's _meta can name.
        call = {"name": "agents", "arguments": {}}
        answer = server.ask(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": envelope("2025-11-25", **call),
            }
        )
        assert answer["error"]["code"] == -32022
        # The envelope without the client's capabilities, or with a version not a string.
        half = {"_meta": {mcp_types.PROTOCOL_VERSION_META_KEY: "2026-07-28"}}
        for i, params in enumerate((half, envelope(7), {})):
            answer = server.ask(
                {"jsonrpc": "2.0", "id": 3 + i, "method": "server/discover", "params": params}
            )
            assert answer["error"]["code"] == -32602, answer
        # ping does not exist in 2026-07-28.
        answer = server.ask(
            {"jsonrpc": "2.0", "id": 6, "method": "ping", "params": envelope("2026-07-28")}
        )
        assert answer["error"]["code"] == -32601
        # The served revision still answers, on the same connection, in its shape.
        answer = server.ask(
            {
                "jsonrpc": "2.0",
                "id": 7,
                "method": "tools/call",
                "params": envelope("2026-07-28", **call),
            }
        )
        result = answer["result"]
        assert result["resultType"] == "complete" and not result.get("isError")
        assert result["_meta"][mcp_types.SERVER_INFO_META_KEY]["name"] == "aiswitch"
        assert "agents" in result["structuredContent"]
    finally:
        assert server.proc.stdin is not None
        server.proc.stdin.close()
        assert server.proc.wait(timeout=30) == 0


def test_closing_stdin_cancels_every_run_and_leaves_no_child(env: dict[str, str]) -> None:
    server = RawServer({**env, "MOCK_HANG": "1"})
    proc = psutil.Process(server.proc.pid)
    server.ask(INITIALIZE)
    started = server.ask(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "run_start", "arguments": {"task": "hang", "agents": ["mock"]}},
        }
    )
    run_id = started["result"]["structuredContent"]["run_id"]
    # A second run, held open, whose progress says when its agent runs.
    server.send(
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {
                "name": "run",
                "arguments": {"task": "hang", "agents": ["mock"]},
                "_meta": {"progressToken": "p"},
            },
        }
    )
    while True:
        message = server.read()
        assert message.get("method") == "notifications/progress", message
        assert message["params"]["progressToken"] == "p"
        if "running" in message["params"]["message"]:
            break
    children = proc.children(recursive=True)
    assert len(children) >= 2  # an agent process per run (and what they started)

    assert server.proc.stdin is not None
    server.proc.stdin.close()

    assert server.proc.wait(timeout=30) == 0
    _gone, alive = psutil.wait_procs(children, timeout=CHILDREN_GONE_S)
    assert alive == []
    shown = run_cli("runs", "show", run_id, "--json", env=env)
    assert shown.json()["status"] == "cancelled"


def test_mcp_does_not_load_on_version(env: dict[str, str]) -> None:
    done = subprocess.run(
        [
            str(Path(aiswitch_bin()).parent / "python"),
            "-c",
            "import sys; sys.argv=['aiswitch','--version']\n"
            "from aiswitch.cli.entry import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'mcp_types' not in sys.modules\n"
            "assert 'aiswitch.cli.mcp_server' not in sys.modules",
        ],
        env={**env, **{k: v for k, v in os.environ.items() if k == "PATH"}},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
