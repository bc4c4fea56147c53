"""Secrets stay where they belong: allowlisted child environments, masking by value, and
imports that cannot quietly send a local key to someone else's server.

Every CLI test runs the installed `aiswitch` as a user would; the run tests start real mock
children. A child's environment is aiswitch's doing, so `preset env` (which builds it with
the same function a run uses) shows it; the agent-log test reads the log file the child
itself wrote.
"""

from __future__ import annotations

import json

import yaml
from support.cli import clean_env, run_cli

from aiswitch.home import Home

# A `preset env` or a mock run takes well under a second; this only ends a hung test (a
# `${file:}` FIFO used to hang `preset env` for ever).
CLI_TIMEOUT_S = 30.0

# Values that do not look like keys: only their names (or where they came from) can say
# they are secret, so a leak of one of these is a miss of masking by value.
PLAIN_CRED = "plain-cred-value-one"
PLAIN_CREDS = "plain-creds-value-two"
PLAIN_PW = "plain-pw-value-three"
FILE_SECRET = "plain-file-secret-four"

PARENT_KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-" + "p" * 40,
    "OPENAI_API_KEY": "sk-proj-" + "o" * 40,
    "GEMINI_API_KEY": "AIza" + "g" * 35,
    "AWS_SECRET_ACCESS_KEY": "aws-" + "w" * 36,
    "MOONSHOT_API_KEY": "sk-" + "m" * 40,
}
ALLOWLISTED = {
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "XDG_CONFIG_HOME": "/tmp/xdg",
    "HTTPS_PROXY": "http://proxy.example:3128",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca.pem",
}


def cli_env(home: Home, **extra: str) -> dict[str, str]:
    return clean_env(home.root, **PARENT_KEYS, **ALLOWLISTED, UNRELATED="not-allowed", **extra)


def add(env: dict[str, str], name: str, *pairs: str, agent: str | None = None) -> None:
    args = ["preset", "add", name, *pairs] + (["--agent", agent] if agent else [])
    out = run_cli(*args, env=env, timeout=CLI_TIMEOUT_S)
    assert out.code == 0, out.stderr


def child_env(env: dict[str, str], *args: str) -> dict[str, str]:
    out = run_cli("preset", "env", *args, "--reveal", "--json", env=env, timeout=CLI_TIMEOUT_S)
    assert out.code == 0, out.stderr
    return dict(out.json()["env"])


def write_agents(home: Home, agents: dict[str, object]) -> None:
    home.config.mkdir(parents=True, exist_ok=True)
    (home.config / "agents.yaml").write_text(yaml.safe_dump({"agents": agents}))


# --- 1. children get an allowlisted environment ----------------------------------------------


def test_a_claude_child_with_a_preset_gets_the_allowlist_its_preset_and_nothing_else(
    home: Home,
) -> None:
    env = cli_env(home)
    add(env, "ant", "ANTHROPIC_API_KEY=${env:ANTHROPIC_API_KEY}", "ANTHROPIC_MODEL=m")
    child = child_env(env, "ant", "--agent", "claude")
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "AWS_SECRET_ACCESS_KEY", "MOONSHOT_API_KEY"):
        assert name not in child, name
    assert "UNRELATED" not in child
    assert child["ANTHROPIC_API_KEY"] == PARENT_KEYS["ANTHROPIC_API_KEY"]  # its preset's
    for name, value in ALLOWLISTED.items():
        assert child[name] == value
    assert child["PATH"] == env["PATH"] and child["HOME"] == env["HOME"]
    own = {"AISWITCH_PRESET", "AISWITCH_PRESET_VARS", "AISWITCH_PRESET_BILLING"}
    own |= {"AISWITCH_AGENT_ID", "AISWITCH_HOME"}
    assert set(child) == {
        *ALLOWLISTED,
        "PATH",
        "HOME",
        "LANG",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_MODEL",
        *own,
    }


def test_a_preset_that_sets_no_provider_variable_passes_no_provider_key(home: Home) -> None:
    env = cli_env(home)
    add(env, "proxied", "HTTPS_PROXY=http://other-proxy:8080")
    child = child_env(env, "proxied", "--agent", "claude")
    assert not set(PARENT_KEYS) & set(child)
    assert child["HTTPS_PROXY"] == "http://other-proxy:8080"


def test_with_no_preset_a_cli_keeps_its_own_variables_and_gets_no_other_providers(
    home: Home,
) -> None:
    env = cli_env(home, CLAUDE_CODE_OAUTH_TOKEN="its-own-login", OPENAI_BASE_URL="https://o")
    claude = child_env(env, "--agent", "claude")
    assert claude["ANTHROPIC_API_KEY"] == PARENT_KEYS["ANTHROPIC_API_KEY"]
    assert claude["CLAUDE_CODE_OAUTH_TOKEN"] == "its-own-login"
    assert "OPENAI_API_KEY" not in claude and "OPENAI_BASE_URL" not in claude
    assert "MOONSHOT_API_KEY" not in claude and "AWS_SECRET_ACCESS_KEY" not in claude
    codex = child_env(env, "--agent", "codex")
    assert codex["OPENAI_API_KEY"] == PARENT_KEYS["OPENAI_API_KEY"]
    assert "ANTHROPIC_API_KEY" not in codex and "CLAUDE_CODE_OAUTH_TOKEN" not in codex
    gemini = child_env(env, "--agent", "gemini")
    assert gemini["GEMINI_API_KEY"] == PARENT_KEYS["GEMINI_API_KEY"]
    assert "OPENAI_API_KEY" not in gemini


def test_an_agents_env_passthrough_names_and_prefixes_reach_its_child(home: Home) -> None:
    write_agents(home, {"claude": {"env_passthrough": ["AWS_SECRET_ACCESS_KEY", "CORP_*"]}})
    env = cli_env(home, CORP_CA_PIN="pin", CORPX="no")
    child = child_env(env, "--agent", "claude")
    assert child["AWS_SECRET_ACCESS_KEY"] == PARENT_KEYS["AWS_SECRET_ACCESS_KEY"]
    assert child["CORP_CA_PIN"] == "pin" and "CORPX" not in child
    assert "OPENAI_API_KEY" not in child


def test_a_run_child_gets_only_the_allowlist_its_preset_and_the_mocks_knobs(home: Home) -> None:
    env = cli_env(home, MOCK_DUMP_ENV="1")
    add(env, "p", "ANTHROPIC_BASE_URL=https://a.example", "ONLY_P=1")
    out = run_cli("run", "--agent", "mock@p", "env?", "--json", env=env, timeout=CLI_TIMEOUT_S)
    assert out.code == 0, out.stderr
    child = json.loads(out.json()["results"][0]["output"])
    assert not set(PARENT_KEYS) & set(child) and "UNRELATED" not in child
    assert child["ONLY_P"] == "1" and child["MOCK_LATENCY"] == "0"
    assert child["HTTPS_PROXY"] == ALLOWLISTED["HTTPS_PROXY"]
