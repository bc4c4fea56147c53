"""The real claude CLI edits its own worktree (its Write tool, scripted by the fake provider)
while a mock agent edits another; the user's checkout is untouched until `apply`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from support.cli import run_cli
from test_real_agents_e2e import Sandbox, pinned_clis, results_by_agent, sandbox
from test_workspaces import GIT_IDENTITY, git, make_repo, tree_bytes

from aiswitch.agents import builtin_agents
from aiswitch.testing.fake_script import ApiKind, RecordedRequest, TextReply, ToolCallReply

pytestmark = [pytest.mark.realcli, pytest.mark.timeout(120)]
__all__ = ["pinned_clis", "sandbox"]  # the e2e module's fixtures, used here

# Claude Code states its working directory in its system prompt ("Primary working
# directory: PATH"), here read from the JSON text of its request.
WORKING_DIRECTORY = re.compile(r"[Ww]orking directory: (/[^\s\\\"]+)")
PROMPT = "Add the greeting file"
GREETING = "hello from claude\n"


def write_into_the_working_directory(request: RecordedRequest) -> ToolCallReply:
    """The model's answer to the task: a Write of greeting.txt where claude runs."""
    found = WORKING_DIRECTORY.search(json.dumps(request.body))
    assert found is not None, "claude's request names no working directory"
    path = f"{found.group(1)}/greeting.txt"
    return ToolCallReply("Write", {"file_path": path, "content": GREETING}, call_id="toolu_w1")


def test_claude_writes_in_its_own_worktree_while_a_mock_writes_in_another(
    sandbox: Sandbox,
) -> None:
    repo = make_repo(sandbox.work / "repo")
    agents = {
        "claude": {"env": sandbox.variables("claude")},
        "writer": {
            "command": builtin_agents()["mock"].command,
            "env": {"MOCK_WRITE": json.dumps({"greeting.txt": "hello from the mock\n"})},
        },
    }
    config = sandbox.ais / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "agents.yaml").write_text(yaml.safe_dump({"agents": agents}), encoding="utf-8")
    sandbox.fake.script.add(write_into_the_working_directory, api=ApiKind.ANTHROPIC, times=1)
    sandbox.fake.script.add(TextReply("Wrote greeting.txt."), api=ApiKind.ANTHROPIC)
    before = tree_bytes(repo), git(repo, "rev-parse", "HEAD")

    env = {**sandbox.env(), **GIT_IDENTITY}
    out = run_cli(
        "run", "-p", "claude,writer", PROMPT, "--permissions", "edit", "--json", env=env, cwd=repo
    )

    results = results_by_agent(out)
    assert out.code == 0, out.stderr
    assert (tree_bytes(repo), git(repo, "rev-parse", "HEAD")) == before
    claude_ws = results["claude"]["workspace"]
    writer_ws = results["writer"]["workspace"]
    assert claude_ws["mode"] == writer_ws["mode"] == "worktree"
    assert (Path(claude_ws["root"]) / "greeting.txt").read_text() == GREETING
    assert (Path(writer_ws["root"]) / "greeting.txt").read_text() == "hello from the mock\n"
    assert claude_ws["changes"]["paths"] == ["greeting.txt"]
    assert claude_ws["changes"]["stat"] == git(
        repo, "diff", "--stat", claude_ws["base"], claude_ws["branch"]
    )
    # The Write really ran: claude sent its result back to the model.
    follow_up = sandbox.fake.requests_for(ApiKind.ANTHROPIC)[-1]
    assert "toolu_w1" in json.dumps(follow_up.body)

    applied = run_cli("apply", out.json()["run_id"], "claude#1", env=env)
    assert applied.code == 0, applied.stderr
    assert (repo / "greeting.txt").read_text() == GREETING
