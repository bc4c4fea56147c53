"""Every `aiswitch preset …` command through the installed console script."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml
from support.cli import Completed, assert_one_error_line, run_cli

from aiswitch.home import Home

ANTHROPIC_KEY = "sk-ant-api03-" + "Zx9" * 12
OPENAI_KEY = "sk-proj-" + "Qw7" * 14
TOKEN = "tok-" + "a1B2c3D4" * 5


def ok(out: Completed) -> Completed:
    assert out.code == 0, out.stderr
    return out


def store_text(home: Home) -> str:
    return (home.config / "presets.yaml").read_text()


# --- add, set, unset, show, list ------------------------------------------------------------


def test_add_then_show_masks_secrets_and_keeps_references_readable(env: dict[str, str]) -> None:
    ok(
        run_cli(
            "preset", "add", "kimi",
            "ANTHROPIC_BASE_URL=https://api.moonshot.ai/anthropic",
            f"ANTHROPIC_AUTH_TOKEN={TOKEN}",
            "ANTHROPIC_API_KEY=${env:MOONSHOT_API_KEY}",
            "PLAIN_LOOKING=" + ANTHROPIC_KEY,
            "--agent", "claude", "--description", "Kimi", "--tag", "kimi",
            env=env,
        )
    )  # fmt: skip
    out = ok(run_cli("preset", "show", "kimi", env=env))
    assert "ANTHROPIC_BASE_URL=https://api.moonshot.ai/anthropic" in out.stdout
    assert "ANTHROPIC_AUTH_TOKEN=****" in out.stdout
    assert "ANTHROPIC_API_KEY=${env:MOONSHOT_API_KEY}" in out.stdout
    assert "PLAIN_LOOKING=sk-ant-****" in out.stdout
    assert TOKEN not in out.stdout and ANTHROPIC_KEY not in out.stdout
    doc = ok(run_cli("preset", "show", "kimi", "--json", env=env)).json()
    assert doc["agent"] == "claude" and doc["tags"] == ["kimi"] and not doc["builtin"]
    assert doc["variables"]["ANTHROPIC_AUTH_TOKEN"] == "****"
    assert doc["references"] == ["${env:MOONSHOT_API_KEY}"]
    revealed = ok(run_cli("preset", "show", "kimi", "--reveal", "--json", env=env)).json()
    assert revealed["variables"]["ANTHROPIC_AUTH_TOKEN"] == TOKEN
    assert revealed["variables"]["PLAIN_LOOKING"] == ANTHROPIC_KEY


def test_set_and_unset_change_variables_and_fields(env: dict[str, str], home: Home) -> None:
    ok(run_cli("preset", "add", "p", "A=1", "B=2", env=env))
    ok(run_cli("preset", "set", "p", "B=3", "C=4", "--model", "m1", env=env))
    ok(run_cli("preset", "unset", "p", "A", env=env))
    doc = ok(run_cli("preset", "show", "p", "--json", env=env)).json()
    assert doc["variables"] == {"B": "3", "C": "4"}
    assert doc["model"] == "m1"
    assert_one_error_line(run_cli("preset", "unset", "p", "NOPE", env=env), "does not set NOPE")
    assert_one_error_line(run_cli("preset", "set", "p", env=env), "nothing to set")


def test_list_shows_built_ins_and_user_presets_and_marks_current_and_default(
    env: dict[str, str],
) -> None:
    ok(run_cli("preset", "add", "mine", "A=1", env=env))
    ok(run_cli("preset", "default", "mine", env=env))
    rows = ok(run_cli("preset", "list", "--json", env={**env, "AISWITCH_PRESET": "fast"})).json()
    by_name = {row["name"]: row for row in rows}
    assert by_name["fast"]["builtin"] and by_name["fast"]["current"]
    assert not by_name["mine"]["builtin"] and by_name["mine"]["default"] == ["global"]
    text = ok(run_cli("preset", "list", env=env)).stdout
    assert "mine" in text and "built-in" in text and "default: global" in text


def test_add_from_a_template_fills_in_the_provider_and_takes_overrides(
    env: dict[str, str],
) -> None:
    ok(run_cli("preset", "add", "ds", "--from-template", "claude-deepseek", "EXTRA=1", env=env))
    doc = ok(run_cli("preset", "show", "ds", "--json", env=env)).json()
    assert doc["variables"]["ANTHROPIC_BASE_URL"] == "https://api.deepseek.com/anthropic"
    assert doc["variables"]["ANTHROPIC_AUTH_TOKEN"] == "${env:DEEPSEEK_API_KEY}"
    assert doc["variables"]["EXTRA"] == "1"
    assert doc["agent"] == "claude" and doc["billing"] == "api"


def test_templates_lists_every_provider_for_each_cli(env: dict[str, str]) -> None:
    docs = ok(run_cli("preset", "templates", "--json", env=env)).json()
    names = {doc["name"] for doc in docs}
    for provider in ("anthropic", "deepseek", "moonshot", "zhipu", "qwen", "openrouter"):
        assert f"claude-{provider}" in names
    for provider in ("openai", "deepseek", "moonshot", "zhipu", "qwen", "openrouter", "local"):
        assert f"codex-{provider}" in names
    assert "gemini-google" in names
    for doc in docs:
        assert doc["billing"] in ("api", "subscription")
        variables = doc["variables"]
        if doc["agent"] == "codex":
            assert variables["OPENAI_BASE_URL"].rstrip("/").endswith(("/v1", "/v4"))
            assert "OPENAI_API_KEY" in variables
        if doc["agent"] == "gemini":
            assert variables["GEMINI_API_KEY"] == "${env:GEMINI_API_KEY}"
    from aiswitch.presets.builtin import templates

    for template in templates().values():
        for name, value in template.variables.items():
            if "KEY" in name or "TOKEN" in name:
                # Keys come from the caller's environment, never from the template.
                assert value.startswith("${env:") or value in ("", "local-no-key"), name


# --- remove, rename, copy, default ----------------------------------------------------------


def test_remove_rename_and_copy(env: dict[str, str]) -> None:
    ok(run_cli("preset", "add", "a", "X=1", env=env))
    ok(run_cli("preset", "copy", "a", "b", env=env))
    ok(run_cli("preset", "copy", "fast", "myfast", env=env))
    ok(run_cli("preset", "rename", "b", "c", env=env))
    ok(run_cli("preset", "remove", "a", env=env))
    names = {row["name"] for row in ok(run_cli("preset", "list", "--json", env=env)).json()}
    assert {"c", "myfast"} <= names and not {"a", "b"} & names
    assert ok(run_cli("preset", "show", "myfast", "--json", env=env)).json()["agent"] == "mock"


def test_a_preset_applied_in_this_shell_or_a_default_cannot_be_removed(
    env: dict[str, str], home: Home
) -> None:
    ok(run_cli("preset", "add", "cur", "X=1", env=env))
    ok(run_cli("preset", "add", "dflt", "X=1", env=env))
    ok(run_cli("preset", "default", "dflt", "--agent", "mock", env=env))
    before = store_text(home)
    out = run_cli("preset", "remove", "cur", env={**env, "AISWITCH_PRESET": "cur"})
    assert_one_error_line(out, "applied in this shell", code=3)
    assert_one_error_line(run_cli("preset", "remove", "dflt", env=env), "default (agent mock)")
    assert store_text(home) == before
    ok(run_cli("preset", "default", "--unset", "--agent", "mock", env=env))
    ok(run_cli("preset", "remove", "dflt", env=env))


def test_default_sets_shows_and_unsets_and_rename_carries_it(env: dict[str, str]) -> None:
    ok(run_cli("preset", "add", "g", "X=1", env=env))
    ok(run_cli("preset", "add", "m", "X=2", "--agent", "mock", env=env))
    ok(run_cli("preset", "default", "g", env=env))
    ok(run_cli("preset", "default", "m", "--agent", "mock", env=env))
    assert ok(run_cli("preset", "default", "--json", env=env)).json() == {
        "global": "g",
        "agents": {"mock": "m"},
    }
    ok(run_cli("preset", "rename", "g", "g2", env=env))
    assert ok(run_cli("preset", "default", "--json", env=env)).json()["global"] == "g2"
    ok(run_cli("preset", "default", "--unset", env=env))
    assert ok(run_cli("preset", "default", "--json", env=env)).json()["global"] is None
    out = run_cli("preset", "default", "m", "--agent", "claude", env=env)
    assert_one_error_line(out, "meant for agent 'mock'")
    assert_one_error_line(
        run_cli("preset", "default", "g2", "--agent", "nosuch", env=env), "nosuch"
    )


# --- validate, export, import, current --------------------------------------------------------


def test_validate_reports_unresolved_references_and_exits_non_zero(
    env: dict[str, str], tmp_path: Path
) -> None:
    ok(run_cli("preset", "add", "good", "A=${env:HAVE_IT}", env=env))
    ok(run_cli("preset", "add", "bad", f"A=${{file:{tmp_path / 'missing'}}}", env=env))
    out = run_cli("preset", "validate", "--json", env={**env, "HAVE_IT": "x"})
    assert out.code == 1
    report = {row["name"]: row for row in out.json()}
    assert report["good"]["ok"] and report["fast"]["ok"]
    assert not report["bad"]["ok"] and "does not exist" in report["bad"]["problems"][0]
    assert ok(run_cli("preset", "validate", "good", env={**env, "HAVE_IT": "x"})).stdout.startswith(
        "ok"
    )
    assert run_cli("preset", "validate", "good", env=env).code == 1


def test_export_redacts_secrets_and_import_refuses_redacted_values(
    env: dict[str, str], tmp_path: Path
) -> None:
    ok(run_cli("preset", "add", "p", f"OPENAI_API_KEY={OPENAI_KEY}", "URL=http://x/v1",
               "REF=${env:K}", env=env))  # fmt: skip
    exported = ok(run_cli("preset", "export", env=env)).stdout
    assert OPENAI_KEY not in exported
    doc = yaml.safe_load(exported)
    variables = doc["presets"]["p"]["variables"]
    assert variables["OPENAI_API_KEY"].startswith("<redacted")
    assert variables["URL"] == "http://x/v1" and variables["REF"] == "${env:K}"
    redacted = tmp_path / "redacted.yaml"
    redacted.write_text(exported)
    other = {**env, "AISWITCH_HOME": str(tmp_path / "other-home")}
    assert_one_error_line(run_cli("preset", "import", str(redacted), env=other), "redacted")
    full = ok(run_cli("preset", "export", "p", "--include-secrets", "--json", env=env)).stdout
    assert OPENAI_KEY in full
    complete = tmp_path / "full.json"
    complete.write_text(full)
    dry = ok(run_cli("preset", "import", str(complete), "--dry-run", "--json", env=other)).json()
    assert dry == {"added": ["p"], "replaced": [], "dry_run": True}
    assert not (tmp_path / "other-home" / "config" / "presets.yaml").exists()
    ok(run_cli("preset", "import", str(complete), env=other))
    shown = ok(run_cli("preset", "show", "p", "--reveal", "--json", env=other)).json()
    assert shown["variables"]["OPENAI_API_KEY"] == OPENAI_KEY
    assert_one_error_line(run_cli("preset", "import", str(complete), env=other), "already exist")
    ok(run_cli("preset", "import", str(complete), "--replace", env=other))


def test_current_reports_the_shells_preset(env: dict[str, str], tmp_path: Path) -> None:
    out = ok(run_cli("preset", "current", env=env))
    assert out.stdout == "" and "no preset" in out.stderr
    applied = {**env, "AISWITCH_PRESET": "fast", "AISWITCH_PRESET_VARS": "MOCK_LATENCY"}
    assert ok(run_cli("preset", "current", env=applied)).stdout == "fast\n"
    (tmp_path / ".aiswitch.yaml").write_text("preset: slow\n")
    doc = ok(run_cli("preset", "current", "--json", env=applied, cwd=tmp_path)).json()
    assert doc["preset"] == "fast" and doc["exists"] and doc["variables"] == ["MOCK_LATENCY"]
    assert doc["project"]["preset"] == "slow"


# --- use, clear, exec, env, shell-init ----------------------------------------------------------


def test_use_prints_code_with_real_values_when_stdout_is_not_a_terminal(
    env: dict[str, str],
) -> None:
    ok(run_cli("preset", "add", "p", f"ANTHROPIC_API_KEY={ANTHROPIC_KEY}", env=env))
    out = ok(run_cli("preset", "use", "p", "--shell", "bash", env=env))
    assert f"export ANTHROPIC_API_KEY='{ANTHROPIC_KEY}';" in out.stdout
    assert "export AISWITCH_PRESET='p';" in out.stdout


def test_use_on_a_terminal_prints_a_hint_instead_of_code(env: dict[str, str]) -> None:
    import pty
    import subprocess

    from support.cli import aiswitch_bin

    ok(run_cli("preset", "add", "p", f"ANTHROPIC_API_KEY={ANTHROPIC_KEY}", env=env))
    main, child = pty.openpty()
    try:
        proc = subprocess.run(
            [aiswitch_bin(), "preset", "use", "p", "--shell", "bash"],
            env=env, stdout=child, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            timeout=60, check=False,
        )  # fmt: skip
        os.close(child)
        child = -1
        written = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            written += chunk
    finally:
        if child >= 0:
            os.close(child)
        os.close(main)
    assert proc.returncode == 0
    assert written == b""
    hint = proc.stderr.decode()
    assert len(hint.strip().splitlines()) == 1
    assert 'eval "$(aiswitch preset use p)"' in hint and ANTHROPIC_KEY not in hint


def test_use_with_no_name_applies_the_directorys_preset(
    env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / ".aiswitch.yaml").write_text("preset: fast\n")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    out = ok(run_cli("preset", "use", "--shell", "bash", env=env, cwd=nested))
    assert "export AISWITCH_PRESET='fast';" in out.stdout
    bare = tmp_path.parent / "no-project-here"
    bare.mkdir()
    assert_one_error_line(run_cli("preset", "use", env=env, cwd=bare), ".aiswitch.yaml")


def test_use_unsets_the_previous_presets_variables(env: dict[str, str]) -> None:
    ok(run_cli("preset", "add", "p2", "B=2", env=env))
    applied = {**env, "AISWITCH_PRESET": "p1", "AISWITCH_PRESET_VARS": "A,B"}
    out = ok(run_cli("preset", "use", "p2", "--shell", "bash", env=applied))
    assert "unset -v A;" in out.stdout and "unset -v B;" not in out.stdout
    cleared = ok(run_cli("preset", "clear", "--shell", "bash", env=applied)).stdout
    assert "unset -v A;" in cleared and "unset -v B;" in cleared


def test_exec_runs_the_command_with_real_values_and_passes_its_exit_code(
    env: dict[str, str],
) -> None:
    ok(run_cli("preset", "add", "p", f"ANTHROPIC_API_KEY={ANTHROPIC_KEY}", "REF=${env:SRC}",
               env=env))  # fmt: skip
    script = "import os, sys, json; print(json.dumps(dict(os.environ))); sys.exit(int(sys.argv[1]))"
    parent = {**env, "SRC": "from-parent", "ANTHROPIC_AUTH_TOKEN": "parent-token"}
    out = run_cli("preset", "exec", "p", "--", sys.executable, "-c", script, "7", env=parent)
    assert out.code == 7
    child = json.loads(out.stdout)
    assert child["ANTHROPIC_API_KEY"] == ANTHROPIC_KEY
    assert child["REF"] == "from-parent"
    assert "ANTHROPIC_AUTH_TOKEN" not in child  # isolation applies to exec too
    assert child["AISWITCH_PRESET"] == "p"


def test_exec_runs_no_shell(env: dict[str, str], tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    out = run_cli("preset", "exec", "fast", "--", "echo", f"$(touch {marker})", env=env)
    assert out.code == 0 and out.stdout == f"$(touch {marker})\n"
    assert not marker.exists()
    missing = run_cli("preset", "exec", "fast", "--", "no-such-program-xyz", env=env)
    assert missing.code == 127 and "not found" in missing.stderr


def test_env_prints_the_childs_environment_masked_unless_revealed(
    env: dict[str, str], home: Home
) -> None:
    ok(run_cli("preset", "add", "k", "ANTHROPIC_AUTH_TOKEN=${env:MOON}",
               "ANTHROPIC_BASE_URL=https://api.moonshot.ai/anthropic", env=env))  # fmt: skip
    parent = {**env, "MOON": TOKEN, "ANTHROPIC_API_KEY": ANTHROPIC_KEY}
    out = ok(run_cli("preset", "env", "k", "--agent", "mock", env=parent))
    lines = dict(line.split("=", 1) for line in out.stdout.splitlines())
    assert lines["ANTHROPIC_AUTH_TOKEN"] == "****"
    assert "ANTHROPIC_API_KEY" not in lines  # the parent's key of the same family is gone
    assert lines["AISWITCH_PRESET"] == "k" and lines["AISWITCH_AGENT_ID"] == "mock#1"
    assert lines["AISWITCH_HOME"] == str(home.root)
    assert TOKEN not in out.stdout and ANTHROPIC_KEY not in out.stdout
    doc = ok(run_cli("preset", "env", "k", "--agent", "mock", "--reveal", "--json", env=parent))
    assert doc.json()["env"]["ANTHROPIC_AUTH_TOKEN"] == TOKEN


def test_env_works_for_agents_whose_cli_is_not_installed(env: dict[str, str]) -> None:
    ok(run_cli("preset", "add", "c", "--from-template", "claude-anthropic", env=env))
    out = ok(run_cli("preset", "env", "c", "--agent", "claude", "--json",
                     env={**env, "ANTHROPIC_API_KEY": ANTHROPIC_KEY}))  # fmt: skip
    assert out.json()["env"]["ANTHROPIC_API_KEY"] == "sk-ant-****"
    wrong = run_cli("preset", "env", "c", "--agent", "codex", env=env)
    assert_one_error_line(wrong, "meant for agent 'claude'")


def test_env_without_a_name_resolves_like_a_run(env: dict[str, str]) -> None:
    ok(run_cli("preset", "add", "d", "X=1", env=env))
    ok(run_cli("preset", "default", "d", "--agent", "mock", env=env))
    doc = ok(run_cli("preset", "env", "--agent", "mock", "--json", env=env)).json()
    assert doc["preset"] == "d"
    shell = {**env, "AISWITCH_PRESET": "fast", "AISWITCH_PRESET_VARS": "MOCK_LATENCY"}
    assert (
        ok(run_cli("preset", "env", "--agent", "mock", "--json", env=shell)).json()["preset"]
        == "fast"
    )


def test_shell_init_prints_the_wrapper_for_the_named_shell(env: dict[str, str]) -> None:
    out = ok(run_cli("shell-init", "fish", env=env))
    assert "function aiswitch" in out.stdout and "AISWITCH_SHELL_WRAPPER=fish" in out.stdout
    assert ok(run_cli("shell-init", "bash", env=env)).stdout.startswith("# aiswitch")
    assert_one_error_line(run_cli("shell-init", "tcsh", env=env), "unknown shell")


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["preset", "add", "../evil", "A=1"], "invalid preset name"),
        (["preset", "add", "-x", "A=1"], ""),
        (["preset", "add", "p", "NOEQUALS"], "is not KEY=VALUE"),
        (["preset", "add", "p", "=v"], "is not KEY=VALUE"),
        (["preset", "add", "p", "1A=v"], "invalid variable name"),
        (["preset", "add", "p", "PATH=/tmp"], "reserved"),
        (["preset", "add", "p", "A=${env:"], "unterminated"),
        (["preset", "add", "p", "--from-template", "nosuch"], "unknown template"),
        (["preset", "add", "fast", "A=1"], "built-in"),
        (["preset", "add", "p", "A=1", "--billing", "free"], "billing"),
        (["preset", "show", "nosuch"], "unknown preset 'nosuch'"),
        (["preset", "use", "nosuch"], "unknown preset 'nosuch'"),
        (["preset", "use", "fast", "--shell", "tcsh"], "unknown shell"),
        (["preset", "remove", "fast"], "read-only"),
        (["preset", "set", "nosuch", "A=1"], "unknown preset"),
        (["preset", "rename", "fast", "x"], "read-only"),
        (["preset", "exec", "nosuch", "--", "true"], "unknown preset"),
        (["preset", "env", "fast", "--agent", "nosuch"], "unknown agent"),
    ],
)
def test_bad_input_is_one_clean_error_line_and_changes_nothing(
    env: dict[str, str], home: Home, args: list[str], fragment: str
) -> None:
    ok(run_cli("preset", "add", "existing", "A=1", env=env))
    before = store_text(home)
    out = run_cli(*args, env=env)
    assert out.code != 0 and out.stdout == ""
    if fragment:
        assert_one_error_line(out, fragment)
    assert store_text(home) == before


def test_a_malformed_argument_is_not_echoed_when_it_looks_like_a_key(env: dict[str, str]) -> None:
    out = run_cli("preset", "add", "p", ANTHROPIC_KEY, env=env)
    assert_one_error_line(out, "is not KEY=VALUE")
    assert ANTHROPIC_KEY not in out.stderr


def test_an_unresolved_reference_fails_use_with_nothing_on_stdout(
    env: dict[str, str], tmp_path: Path
) -> None:
    ok(run_cli("preset", "add", "p", "A=${env:NOT_SET_ANYWHERE}", env=env))
    assert_one_error_line(run_cli("preset", "use", "p", "--shell", "bash", env=env),
                       "${env:NOT_SET_ANYWHERE}", code=3)  # fmt: skip
    ok(run_cli("preset", "add", "f", f"A=${{file:{tmp_path / 'nope'}}}", env=env))
    assert_one_error_line(run_cli("preset", "use", "f", env=env), "does not exist")


def test_invalid_yaml_in_the_store_is_one_error_naming_file_and_line(
    env: dict[str, str], home: Home
) -> None:
    home.ensure()
    path = home.config / "presets.yaml"
    path.write_text("presets:\n  a: {variables: {X: 1}\n  b: 2\n")
    before = path.read_bytes()
    for args in (["preset", "list"], ["preset", "add", "n", "A=1"], ["preset", "use", "fast"]):
        out = run_cli(*args, env=env)
        assert_one_error_line(out, str(path), "line ", code=3)
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(os.stat(path).st_mode)
