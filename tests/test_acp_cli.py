"""ACP agents through `aiswitch run` and `aiswitch agents list`, as a user defines them in
agents.yaml (`kind: acp`), with the scripted ACP agent (tests/agents/acp_scripted.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from support.cli import assert_one_error_line, run_cli

from aiswitch.agents import AgentRegistry
from aiswitch.home import Home

pytestmark = pytest.mark.timeout(120)

AGENT = Path(__file__).parent / "agents" / "acp_scripted.py"
# The task timeout of the deaf-turn test. It counts from the assignment, and the agent (a
# Python process started inside the task) must spawn its terminal before it: at load 15
# here the terminal came 6-12 s after `aiswitch run` started, too near the 8 s this was.
# The test lasts about this long.
DEAF_TIMEOUT_S = 20


def define(home: Home, tmp_path: Path, steps: list[dict[str, Any]], **more: Any) -> None:
    """Agent `scripted`: the scripted ACP agent doing `steps` for every prompt."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"*": steps}))
    home.ensure()
    agents = {
        "scripted": {
            "kind": "acp",
            "command": [sys.executable, str(AGENT)],
            "env": {"ACP_TEST_SCRIPT": str(script)},
            **more,
        }
    }
    (home.config / "agents.yaml").write_text(yaml.safe_dump({"agents": agents}))


def test_an_acp_agent_runs_beside_a_native_one_and_its_usage_reaches_the_ledger(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    tokens = {"inputTokens": 40, "outputTokens": 9, "totalTokens": 49}
    define(home, tmp_path, [{"say": "acp says {prompt}"}, {"tokens": tokens}])

    out = run_cli("run", "--parallel", "scripted,mock", "hello", "--json", env=env, cwd=tmp_path)

    assert out.code == 0, out.stderr
    results = {r["agent"]: r for r in out.json()["results"]}
    assert results["scripted"]["status"] == "ok"
    assert results["scripted"]["output"] == "acp says hello"
    assert results["mock"]["status"] == "ok"
    ledger = [json.loads(line) for line in home.ledger.read_text().splitlines()]
    mine = [r for r in ledger if r["agent"] == "scripted"]
    assert [(r["input_tokens"], r["output_tokens"]) for r in mine] == [(40, 9)]
    assert mine[0]["session_id"] == results["scripted"]["session_id"]


def test_read_only_refuses_an_acp_agents_write_and_says_so(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    define(home, tmp_path, [{"write": "new.txt", "content": "x"}])

    out = run_cli(
        "run",
        "--agent",
        "scripted",
        "write",
        "--permissions",
        "read-only",
        "--json",
        env=env,
        cwd=tmp_path,
    )

    assert out.code == 0, out.stderr
    assert "write refused" in out.json()["results"][0]["output"]
    assert not (tmp_path / "new.txt").exists()


def test_a_turn_that_ignores_cancel_is_killed_at_the_timeout_with_its_terminals(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    define(home, tmp_path, [{"spawn": f"echo $$ >> {pids}; exec sleep 300"}, {"deaf": True}])

    out = run_cli(
        "run", "--agent", "scripted", "x", "--timeout", str(DEAF_TIMEOUT_S), "--json",
        env=env, cwd=tmp_path,
    )  # fmt: skip

    result = out.json()["results"][0]
    assert result["status"] == "timeout", result
    terminal = int(pids.read_text().split()[0])
    assert not psutil.pid_exists(terminal) or psutil.Process(terminal).status() == "zombie"
    assert left_behind(home) == []


def left_behind(home: Home) -> list[str]:
    """Live processes started for this home (they carry its AISWITCH_HOME)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get("AISWITCH_HOME") == str(home.root):
                found.append(" ".join(proc.info["cmdline"] or []))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def test_agents_list_shows_acp_agents_and_what_to_install(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    define(home, tmp_path, [])
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"

    out = run_cli("agents", "list", "--json", env=env)

    assert out.code == 0, out.stderr
    rows = {row["name"]: row for row in out.json()}
    assert rows["scripted"]["kind"] == "acp" and rows["scripted"]["available"]
    assert rows["scripted"]["command"] == [sys.executable, str(AGENT)]
    for name in ("gemini-acp", "claude-acp", "codex-acp", "qwen", "opencode"):
        assert rows[name]["kind"] == "acp"
    assert rows["opencode"]["available"] is False
    assert "npm install -g opencode-ai" in rows["opencode"]["unavailable"]
    text = run_cli("agents", "list", env=env).stdout
    assert "opencode       acp      missing" in text


def test_running_a_missing_acp_agent_is_one_line_naming_the_package(
    env: dict[str, str], home: Home
) -> None:
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    out = run_cli("run", "--agent", "claude-acp", "x", env=env)
    assert out.code == 5
    assert_one_error_line(out, "claude-code-acp", "npm install -g @zed-industries/claude-code-acp")


def test_a_builtin_acp_agents_command_can_be_replaced_field_by_field(home: Home) -> None:
    home.ensure()
    (home.config / "agents.yaml").write_text(
        "agents:\n"
        "  gemini-acp:\n"
        "    command: [/opt/gemini/bin/gemini, --acp]\n"
        "  mock-behind-acp:\n"
        "    kind: acp\n"
        "    command: [my-agent, --stdio]\n"
    )
    agents = AgentRegistry.load(home).agents
    gemini = agents["gemini-acp"]
    assert gemini.acp_command == ["/opt/gemini/bin/gemini", "--acp"]
    assert gemini.command[-1] == "aiswitch_adapters.acp"
    assert gemini.cli == "/opt/gemini/bin/gemini"
    assert gemini.options["acp_command"] == gemini.acp_command
    assert gemini.options["acp_cli"] == "gemini"  # still Gemini CLI behind it
    mine = agents["mock-behind-acp"]
    assert mine.command[-1] == "aiswitch_adapters.acp"
    assert mine.options == {"acp_command": ["my-agent", "--stdio"]}
