"""`aiswitch mcp install|uninstall CLIENT` on config files that already hold other entries:
nothing else changes, install twice equals install once, uninstall gives the file back."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from support.cli import run_cli

CODEX = """# my codex config
model = "gpt-5"  # the model

[mcp_servers.other]
command = "other-server"
args = ["--x"]   # keep me

[profiles.fast]
model = "o4-mini"
"""
CLAUDE = json.dumps(
    {
        "numStartups": 3,
        "mcpServers": {"other": {"command": "other-server", "args": []}},
        "projects": {"/x": {"allowedTools": []}},
    },
    indent=2,
)
GEMINI = json.dumps(
    {"theme": "Dracula", "mcpServers": {"other": {"command": "o", "args": ["-v"]}}}, indent=4
)


def setup(tmp_path: Path, client: str, scope: str) -> tuple[Path, dict[str, str], Path]:
    home, project = tmp_path / "userhome", tmp_path / "project"
    project.mkdir(parents=True)
    paths = {
        ("claude", "user"): home / ".claude.json",
        ("claude", "project"): project / ".mcp.json",
        ("codex", "user"): home / ".codex" / "config.toml",
        ("codex", "project"): project / ".codex" / "config.toml",
        ("gemini", "user"): home / ".gemini" / "settings.json",
        ("gemini", "project"): project / ".gemini" / "settings.json",
    }
    path = paths[(client, scope)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text({"claude": CLAUDE, "codex": CODEX, "gemini": GEMINI}[client])
    return path, {"HOME": str(home)}, project


def servers(path: Path, client: str) -> dict[str, object]:
    if client == "codex":
        return tomllib.loads(path.read_text())["mcp_servers"]  # type: ignore[no-any-return]
    return json.loads(path.read_text())["mcpServers"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("scope", ["user", "project"])
@pytest.mark.parametrize("client", ["claude", "codex", "gemini"])
def test_install_adds_only_its_entry_is_idempotent_and_uninstall_restores_the_file(
    tmp_path: Path, env: dict[str, str], client: str, scope: str
) -> None:
    path, extra, project = setup(tmp_path, client, scope)
    original = path.read_text()
    env = {**env, **extra}
    env.pop("CODEX_HOME", None)

    first = run_cli("mcp", "install", client, "--scope", scope, "--agents", "codex", env=env,
                    cwd=project)  # fmt: skip
    assert first.code == 0, first.stderr
    assert "+" in first.stdout and "aiswitch" in first.stdout  # the change is shown
    after_once = path.read_text()
    entry = servers(path, client)["aiswitch"]
    assert entry["args"] == ["mcp", "--agents", "codex"]  # type: ignore[index]
    assert servers(path, client)["other"]  # the other server is still there
    if client == "codex":
        assert "# keep me" in after_once and "# my codex config" in after_once
        assert tomllib.loads(after_once)["profiles"] == {"fast": {"model": "o4-mini"}}
    else:
        before, now = json.loads(original), json.loads(after_once)
        now["mcpServers"].pop("aiswitch")
        assert now == before

    again = run_cli("mcp", "install", client, "--scope", scope, "--agents", "codex", env=env,
                    cwd=project)  # fmt: skip
    assert again.code == 0 and again.stdout == ""
    assert path.read_text() == after_once

    removed = run_cli("mcp", "uninstall", client, "--scope", scope, env=env, cwd=project)
    assert removed.code == 0, removed.stderr
    assert path.read_text() == original


def test_dry_run_shows_the_change_and_writes_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    path, extra, project = setup(tmp_path, "gemini", "user")
    original = path.read_text()

    done = run_cli("mcp", "install", "gemini", "--dry-run", env={**env, **extra}, cwd=project)

    assert done.code == 0, done.stderr
    assert '+        "aiswitch": {' in done.stdout
    assert path.read_text() == original


def test_a_json_file_with_comments_is_left_alone_with_what_to_add(
    tmp_path: Path, env: dict[str, str]
) -> None:
    path, extra, project = setup(tmp_path, "gemini", "user")
    path.write_text('{\n  // my settings\n  "theme": "x"\n}\n')
    original = path.read_text()

    done = run_cli("mcp", "install", "gemini", env={**env, **extra}, cwd=project)

    assert done.code == 2
    assert "not plain JSON" in done.stderr and "Traceback" not in done.stderr
    assert path.read_text() == original


def test_an_unknown_client_is_refused_in_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    done = run_cli("mcp", "install", "vim", env=env)
    assert done.code == 2
    assert done.stderr.strip().count("\n") == 0 and "claude, codex or gemini" in done.stderr
