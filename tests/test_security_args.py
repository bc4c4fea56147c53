"""Values that become arguments: a session id reaches a CLI as a value, never as an option.

`--resume --dangerously-skip-permissions` once reached claude's argv (codex: `resume
--dangerously-bypass-approvals-and-sandbox`, gemini: `--resume --yolo`). Each adapter now
checks the id against its CLI's format (a UUID) before it builds the command.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiswitch_adapters import claude, codex, gemini
from support.cli import Completed, run_cli
from support.hand_agent import hand_agent
from test_adapter_common import make_ctx

from aiswitch.adapter_sdk import TaskFailed
from aiswitch.home import Home

SESSION = "4d498983-031a-4dd9-a07b-8b3d98c8082d"

BUILDERS: dict[str, Callable[[str], list[str]]] = {
    "claude": lambda sid: claude.build_argv("claude", make_ctx(session_id=sid), "edit"),
    "codex": lambda sid: codex.build_argv("codex", make_ctx(session_id=sid), {}, "edit"),
    "gemini": lambda sid: gemini.build_argv("gemini", make_ctx(session_id=sid), {}, "edit"),
}

HOSTILE = {
    "claude": "--dangerously-skip-permissions",
    "codex": "--dangerously-bypass-approvals-and-sandbox",
    "gemini": "--yolo",
}


@pytest.mark.parametrize("cli", sorted(BUILDERS))
def test_a_session_id_that_is_an_option_is_refused_before_the_cli_starts(cli: str) -> None:
    with pytest.raises(TaskFailed, match=f"not a {cli} session id"):
        BUILDERS[cli](HOSTILE[cli])


@pytest.mark.parametrize("cli", sorted(BUILDERS))
@pytest.mark.parametrize(
    "value", ["-x", "abc", f"{SESSION}\n--yolo", f" {SESSION}", f"{SESSION} -y"]
)
def test_anything_but_the_clis_own_session_id_format_is_refused(cli: str, value: str) -> None:
    with pytest.raises(TaskFailed):
        BUILDERS[cli](value)


@pytest.mark.parametrize("cli", sorted(BUILDERS))
def test_a_real_session_id_follows_the_resume_option_as_its_value(cli: str) -> None:
    argv = BUILDERS[cli](SESSION)
    flag = "resume" if cli == "codex" else "--resume"
    assert argv[argv.index(flag) + 1] == SESSION
    assert argv.count(SESSION) == 1


# -- numbers from agents ----------------------------------------------------------------

# A child that speaks the protocol by hand, so that it can send any number as written: the
# usage notification's cost and input count, and the result's cost, come from its env.
# Sends its usage and result with the numbers as the test gives them, as raw text.
RAW_ON_ASSIGN = """
send('{"jsonrpc": "2.0", "method": "tokens.usage", "params": {"task_id": %s, '
     '"usage": {"input_tokens": %s}, "cost_usd": %s}}'
     % (tid, os.environ["RAW_INPUT"], os.environ["RAW_COST"]))
result = '{"task_id": %s, "status": "ok", "output": "done", "cost_usd": %s}' % (
    tid, os.environ["RAW_RESULT_COST"])
"""


def strict_json(path: Path) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{path.name} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def run_raw_agent(
    tmp_path: Path, home: Home, env: dict[str, str], *, cost: str, count: str, result_cost: str
) -> Completed:
    raw_env = {"RAW_COST": cost, "RAW_INPUT": count, "RAW_RESULT_COST": result_cost}
    hand_agent(home, tmp_path, "raw", RAW_ON_ASSIGN, env=raw_env)
    return run_cli("run", "--agent", "raw", "x", "--json", env=env)


@pytest.mark.parametrize(
    ("cost", "count"),
    [
        ("1e309", "1"),
        ("-1e309", "1"),
        ("NaN", "1"),
        ("-0.5", "1"),
        ("0", "-3"),
        ("0", "1e309"),
        ("0", str(2**63)),
        ("0", "1.5"),
    ],
)
def test_a_usage_notification_with_a_number_no_total_survives_is_refused_and_logged(
    tmp_path: Path, home: Home, env: dict[str, str], cost: str, count: str
) -> None:
    out = run_raw_agent(tmp_path, home, env, cost=cost, count=count, result_cost="null")

    assert out.code == 0, out.stderr
    assert "Traceback" not in out.stderr
    for run in home.runs.glob("*.json"):
        strict_json(run)
    strict_json(home.state / "tasks.json")
    assert not home.ledger.exists() or home.ledger.read_bytes() == b""
    log = (home.logs / "coordinator.log").read_text()
    assert "invalid tokens.usage notification skipped" in log


@pytest.mark.parametrize("cost", ["1e309", "-1", "NaN"])
def test_a_result_with_a_cost_no_total_survives_fails_that_task_not_the_run_file(
    tmp_path: Path, home: Home, env: dict[str, str], cost: str
) -> None:
    out = run_raw_agent(tmp_path, home, env, cost="0.25", count="10", result_cost=cost)

    assert "Traceback" not in out.stderr
    (result,) = out.json()["results"]
    assert result["status"] == "failed"
    assert "cost_usd" in result["error"]
    (run,) = home.runs.glob("*.json")
    assert "Infinity" not in run.read_text() and "NaN" not in run.read_text()
    strict_json(run)
