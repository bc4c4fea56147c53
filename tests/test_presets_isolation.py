"""What each agent child gets: resolution order, the isolation rule, and real runs.

The run tests start real mock children whose task output is the JSON of their environment
(`MOCK_DUMP_ENV=1`): once through the Coordinator library with `run_resolver`, and once
through `aiswitch run --parallel … --json` as a user runs it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from support.cli import clean_env, run_cli

from aiswitch.agents import AgentRegistry
from aiswitch.coordinator.specs import parse_specs
from aiswitch.errors import PresetError
from aiswitch.home import Home
from aiswitch.presets.model import Preset
from aiswitch.presets.resolve import choose_preset, run_resolver
from aiswitch.presets.store import PresetStore, StoreData
from aiswitch.supervisor.env import ChildEnvRequest, build_child_env

# A run of two mock children with no latency finishes in well under a second.
RUN_TIMEOUT_S = 60.0

PARENT_ANTHROPIC_KEY = "sk-ant-api03-PARENT" + "x1" * 16
A_TOKEN = "a-token-" + "9f" * 12
B_KEY = "sk-proj-B" + "k2" * 16


def save(home: Home, *presets: Preset, defaults: Mapping[str, Any] | None = None) -> None:
    def change(data: StoreData) -> None:
        for preset in presets:
            data.presets[preset.name] = preset
        if defaults:
            data.defaults.global_ = defaults.get("global")
            data.defaults.agents.update(defaults.get("agents", {}))

    PresetStore(home).modify(change)


# --- build_child_env ------------------------------------------------------------------------


def test_a_child_with_a_preset_gets_the_allowlist_and_its_preset_and_nothing_else() -> None:
    parent = {
        "PATH": "/bin",
        "LC_ALL": "C.UTF-8",
        "HTTPS_PROXY": "http://proxy:3128",
        "ANTHROPIC_API_KEY": PARENT_ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": "https://api.anthropic.com",
        "CLAUDE_CODE_OAUTH_TOKEN": "oauth",
        "CLAUDE_CONFIG_DIR": "/home/u/.claude-alt",
        "OPENAI_API_KEY": "sk-parent-openai",
        "UNRELATED": "not on the allowlist",
    }
    env = build_child_env(
        ChildEnvRequest(
            parent=parent,
            cli="claude",
            preset="kimi",
            preset_vars={"ANTHROPIC_AUTH_TOKEN": "t", "ANTHROPIC_BASE_URL": "https://k"},
        )
    )
    assert "ANTHROPIC_API_KEY" not in env and "CLAUDE_CODE_OAUTH_TOKEN" not in env
    assert env["ANTHROPIC_BASE_URL"] == "https://k" and env["ANTHROPIC_AUTH_TOKEN"] == "t"
    assert env["CLAUDE_CONFIG_DIR"] == "/home/u/.claude-alt"  # where the CLI keeps its files
    assert "OPENAI_API_KEY" not in env and "UNRELATED" not in env
    assert env["PATH"] == "/bin" and env["LC_ALL"] == "C.UTF-8"
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    assert env["AISWITCH_PRESET"] == "kimi"
    assert env["AISWITCH_PRESET_VARS"] == "ANTHROPIC_AUTH_TOKEN,ANTHROPIC_BASE_URL"


@pytest.mark.parametrize(
    ("preset_var", "parent_var"),
    [
        ("OPENAI_BASE_URL", "CODEX_API_KEY"),
        ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        ("GOOGLE_GEMINI_BASE_URL", "GOOGLE_GENAI_USE_VERTEXAI"),
        ("DEEPSEEK_API_KEY", "DEEPSEEK_BASE_URL"),
        ("KIMI_API_KEY", "MOONSHOT_API_KEY"),
        ("DASHSCOPE_API_KEY", "QWEN_API_KEY"),
        ("GLM_API_KEY", "ZHIPU_API_KEY"),
        ("OPENROUTER_MODEL", "OPENROUTER_API_KEY"),
    ],
)
def test_each_provider_family_is_isolated(preset_var: str, parent_var: str) -> None:
    env = build_child_env(
        ChildEnvRequest(parent={parent_var: "parent"}, preset="p", preset_vars={preset_var: "x"})
    )
    assert parent_var not in env


def test_the_agent_definitions_env_and_a_presets_unset_list_apply() -> None:
    env = build_child_env(
        ChildEnvRequest(
            parent={"ANTHROPIC_API_KEY": "parent", "LANG": "C.UTF-8", "TZ": "UTC"},
            agent_env={"ANTHROPIC_MODEL": "from-agent-config"},
            cli="claude",
            preset="p",
            preset_vars={"ANTHROPIC_BASE_URL": "https://k"},
            preset_unset=("TZ",),
        )
    )
    assert env["ANTHROPIC_MODEL"] == "from-agent-config"  # configuration, not inheritance
    assert "ANTHROPIC_API_KEY" not in env and "TZ" not in env and env["LANG"] == "C.UTF-8"


def test_the_calling_shells_preset_variables_never_reach_a_child_with_another_preset() -> None:
    parent = {
        "AISWITCH_PRESET": "shellp",
        "AISWITCH_PRESET_VARS": "HTTPS_PROXY,MOCK_MODEL",
        "HTTPS_PROXY": "http://from-the-shell-preset",
        "MOCK_MODEL": "shell-model",
        "MOCK_STEPS": "0",
        "PATH": "/bin",
    }
    mock = ("MOCK_*",)
    env = build_child_env(
        ChildEnvRequest(parent=parent, passthrough=mock, preset="other", preset_vars={"X": "1"})
    )
    assert "HTTPS_PROXY" not in env and "MOCK_MODEL" not in env and env["MOCK_STEPS"] == "0"
    assert env["AISWITCH_PRESET"] == "other" and env["PATH"] == "/bin"
    bare = build_child_env(ChildEnvRequest(parent=parent, passthrough=mock))
    assert "HTTPS_PROXY" not in bare and "AISWITCH_PRESET" not in bare


def test_a_garbled_shell_variable_list_neither_fails_nor_removes_odd_names() -> None:
    parent = {"AISWITCH_PRESET_VARS": "A,,$(x), B ,1C", "A": "1", "B": "2", "KEEP": "k"}
    env = build_child_env(ChildEnvRequest(parent=parent, passthrough=("A", "B", "KEEP")))
    assert "A" not in env and "B" not in env and env["KEEP"] == "k"


# --- resolution order -------------------------------------------------------------------------


def choose(home: Home, spec: str | None, agent: str, caller: Mapping[str, str]) -> str:
    store = PresetStore(home)
    chosen = choose_preset(spec, agent, caller, store, store.load()).preset
    return "none" if chosen is None else chosen.name


def test_resolution_order_is_spec_then_shell_then_agent_default_then_global(home: Home) -> None:
    save(
        home,
        Preset(name="g"),
        Preset(name="am"),
        Preset(name="sh"),
        Preset(name="sp"),
        defaults={"global": "g", "agents": {"mock": "am"}},
    )
    shell = {"AISWITCH_PRESET": "sh"}
    assert choose(home, "sp", "mock", shell) == "sp"
    assert choose(home, None, "mock", shell) == "sh"
    assert choose(home, None, "mock", {}) == "am"
    assert choose(home, None, "claude", {}) == "g"


def test_with_nothing_configured_a_child_gets_no_preset(home: Home) -> None:
    assert choose(home, None, "mock", {}) == "none"


def test_a_preset_for_another_agent_is_an_error_when_asked_for_and_skipped_when_inherited(
    home: Home,
) -> None:
    save(
        home,
        Preset(name="forclaude", agent="claude"),
        Preset(name="g"),
        defaults={"global": "forclaude"},
    )
    with pytest.raises(PresetError, match="meant for agent 'claude', not 'mock'"):
        choose(home, "forclaude", "mock", {})
    assert choose(home, None, "mock", {"AISWITCH_PRESET": "forclaude"}) == "none"
    assert choose(home, None, "claude", {"AISWITCH_PRESET": "forclaude"}) == "forclaude"


def test_a_shell_preset_that_no_longer_exists_is_a_clear_error(home: Home) -> None:
    with pytest.raises(PresetError, match=r"applied in this shell.*no longer exists"):
        choose(home, None, "mock", {"AISWITCH_PRESET": "gone"})


def test_the_resolver_resolves_references_from_the_callers_environment(home: Home) -> None:
    save(home, Preset(name="r", variables={"K": "${env:SRC}"}, unset=["U"], billing="api"))
    registry = AgentRegistry.load(home)
    resolve = run_resolver(home, {"SRC": "value"})
    result = resolve("r", registry.get("mock"))
    assert (result.name, dict(result.variables), result.unset) == ("r", {"K": "value"}, ("U",))
    assert result.billing == "api"
    with pytest.raises(PresetError, match=r"\$\{env:SRC\}"):
        run_resolver(home, {})("r", registry.get("mock"))


# --- real runs ---------------------------------------------------------------------------------


def two_provider_presets(home: Home) -> None:
    # a's token comes from a file: a value only a's child may hold. (An ${env:…} source is
    # the caller's own variable, inherited by every child like any other.)
    token_file = home.root.parent / "a-token"
    token_file.write_text(A_TOKEN + "\n")
    save(
        home,
        Preset(
            name="a",
            variables={
                "ANTHROPIC_BASE_URL": "https://a.example/anthropic",
                "ANTHROPIC_AUTH_TOKEN": f"${{file:{token_file}}}",
                "ONLY_A": "a",
            },
        ),
        Preset(name="b", variables={"OPENAI_API_KEY": B_KEY, "ONLY_B": "b"}),
    )


def caller_env(home: Home) -> dict[str, str]:
    return clean_env(
        home.root,
        MOCK_DUMP_ENV="1",
        ANTHROPIC_API_KEY=PARENT_ANTHROPIC_KEY,
        AISWITCH_PRESET="fast",
        AISWITCH_PRESET_VARS="MOCK_LATENCY,SHELL_SECRET",
        SHELL_SECRET="from-the-shell",
    )


def assert_isolated(a: dict[str, str], b: dict[str, str]) -> None:
    assert a["AISWITCH_PRESET"] == "a" and b["AISWITCH_PRESET"] == "b"
    # a sets the Anthropic family: the parent's Anthropic key never reaches it.
    assert "ANTHROPIC_API_KEY" not in a
    assert a["ANTHROPIC_AUTH_TOKEN"] == A_TOKEN
    # Neither child sees the other's values.
    assert "OPENAI_API_KEY" not in a and "ONLY_B" not in a
    assert "ANTHROPIC_AUTH_TOKEN" not in b and "ONLY_A" not in b and A_TOKEN not in b.values()
    assert b["OPENAI_API_KEY"] == B_KEY
    # The calling shell's preset variables reach neither.
    for child in (a, b):
        assert "SHELL_SECRET" not in child


async def test_a_library_run_gives_each_child_only_its_own_presets_values(home: Home) -> None:
    from aiswitch.coordinator.coordinator import Coordinator
    from aiswitch.coordinator.request import RunRequest

    two_provider_presets(home)
    caller = caller_env(home)
    coordinator = Coordinator(home, resolve_preset=run_resolver(home, caller), parent_env=caller)
    request = RunRequest(mode="parallel", specs=parse_specs("mock@a,mock@b"), prompt="env?")
    async with asyncio.timeout(RUN_TIMEOUT_S):
        run = await coordinator.run(request)
    assert run.status == "ok", [r.error for r in run.results]
    a, b = (json.loads(result.output) for result in run.results)
    assert_isolated(a, b)


def test_aiswitch_run_gives_each_child_only_its_own_presets_values(home: Home) -> None:
    two_provider_presets(home)
    out = run_cli("run", "--parallel", "mock@a,mock@b", "env?", "--json", env=caller_env(home))
    assert out.code == 0, out.stderr
    results = out.json()["results"]
    assert [r["preset"] for r in results] == ["a", "b"]
    a, b = (json.loads(r["output"]) for r in results)
    assert_isolated(a, b)
    # b sets no Anthropic variable, yet the parent's Anthropic key is not inherited: a child
    # with a preset gets the allowlist and its preset, nothing else of the parent's.
    assert "ANTHROPIC_API_KEY" not in b


def test_aiswitch_run_uses_the_shells_preset_and_then_the_defaults(
    home: Home, tmp_path: Path
) -> None:
    save(
        home,
        Preset(name="agentdefault", variables={"FROM": "agent-default"}),
        defaults={"agents": {"mock": "agentdefault"}},
    )
    env = clean_env(home.root, MOCK_DUMP_ENV="1")
    out = run_cli("run", "--agent", "mock", "x", "--json", env=env)
    assert out.code == 0, out.stderr
    child = json.loads(out.json()["results"][0]["output"])
    assert child["AISWITCH_PRESET"] == "agentdefault" and child["FROM"] == "agent-default"
    shell = {**env, "AISWITCH_PRESET": "fast", "AISWITCH_PRESET_VARS": "MOCK_LATENCY,MOCK_STEPS"}
    out = run_cli("run", "--agent", "mock", "x", "--json", env=shell)
    assert out.json()["results"][0]["preset"] == "fast"
