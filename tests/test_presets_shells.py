"""`preset use`, `preset clear` and `shell-init` of the REAL aiswitch binary in real shells.

Each test runs bash, zsh or fish (scripts/setup/shells.sh installs them) with the installed
console script first on PATH, evaluates what the binary prints the way a user does, and reads
the shell's exported environment back through `env -0`. No shell is told which shell it is:
the binary detects it from its parent process ($SHELL points elsewhere on purpose).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from aiswitch.home import Home
from aiswitch.presets.model import Preset
from aiswitch.presets.store import PresetStore, StoreData

pytestmark = pytest.mark.shells

SHELLS = ("bash", "zsh", "fish")
# Several aiswitch invocations in one shell: each is a Python start (~0.2 s); generous for CI.
SHELL_TIMEOUT_S = 60.0


def nasty(marker: Path) -> dict[str, str]:
    return {
        "SUBST": f"$(touch {marker})",
        "TICKS": f"`touch {marker}`",
        "FISH_SUBST": f"(touch {marker})",
        "QUOTES": 'it\'s "quoted" \\ back',
        "NEWLINES": "one\ntwo\n",
        "DOLLARS": "$HOME ${HOME} $$",
        "PERCENT_UNICODE": "100% 日本 🚀",
        "LEADING_DASH": "-n",
        "EMPTY": "",
    }


@pytest.fixture
def shell_env(home: Home, tmp_path: Path) -> dict[str, str]:
    """A small environment with the installed aiswitch first on PATH and two presets."""
    marker = tmp_path / "executed"
    p1 = Preset(name="p1", variables={**nasty(marker), "ONLY_P1": "1", "SHARED": "from-p1"})
    p2 = Preset(name="p2", variables={"ONLY_P2": "2", "SHARED": "from-p2", "REF": "${env:SRC}"})
    broken = Preset(name="broken", variables={"X": "${env:NOT_SET_ANYWHERE}"})

    def change(data: StoreData) -> None:
        for preset in (p1, p2, broken):
            data.presets[preset.name] = preset

    PresetStore(home).modify(change)
    bindir = str(Path(sys.executable).parent)
    return {
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "AISWITCH_HOME": str(home.root),
        # Not the shell under test: detection must go by the parent process.
        "SHELL": "/bin/sh",
        "SRC": "from-the-caller",
        "MARKER": str(marker),
    }


def run_in(shell: str, script: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    argv = {
        "bash": ["bash", "--norc", "--noprofile", "-c", script],
        "zsh": ["zsh", "-f", "-c", script],
        "fish": ["fish", "--no-config", "-c", script],
    }[shell]
    return subprocess.run(
        argv, env=dict(env), capture_output=True, text=True, timeout=SHELL_TIMEOUT_S, check=False
    )


def read_env0(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in path.read_bytes().split(b"\0"):
        if entry:
            name, _, value = entry.decode("utf-8").partition("=")
            out[name] = value
    return out


def apply(shell: str, name: str) -> str:
    """How a user applies `preset use NAME` in `shell` without the wrapper."""
    if shell == "fish":
        return f"aiswitch preset use {name} | source"
    return f'eval "$(aiswitch preset use {name})"'


@pytest.mark.parametrize("shell", SHELLS)
def test_use_sets_every_value_exactly_and_executes_nothing(
    shell: str, shell_env: dict[str, str], tmp_path: Path
) -> None:
    dump = tmp_path / "env"
    proc = run_in(shell, f"{apply(shell, 'p1')}\nenv -0 > '{dump}'", shell_env)
    assert proc.returncode == 0, proc.stderr
    env = read_env0(dump)
    for name, value in nasty(Path(shell_env["MARKER"])).items():
        assert env[name] == value, name
    assert env["AISWITCH_PRESET"] == "p1"
    assert not Path(shell_env["MARKER"]).exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_switching_unsets_the_previous_presets_variables(
    shell: str, shell_env: dict[str, str], tmp_path: Path
) -> None:
    dump = tmp_path / "env"
    script = f"{apply(shell, 'p1')}\n{apply(shell, 'p2')}\nenv -0 > '{dump}'"
    proc = run_in(shell, script, shell_env)
    assert proc.returncode == 0, proc.stderr
    env = read_env0(dump)
    assert env["ONLY_P2"] == "2" and env["SHARED"] == "from-p2"
    assert env["REF"] == "from-the-caller"
    for name in ("ONLY_P1", *nasty(Path("x"))):
        assert name not in env, name
    assert env["AISWITCH_PRESET"] == "p2"
    assert sorted(env["AISWITCH_PRESET_VARS"].split(",")) == ["ONLY_P2", "REF", "SHARED"]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize("bad", ["nosuch", "broken", "../evil"])
def test_a_failed_use_prints_nothing_returns_non_zero_and_changes_nothing(
    shell: str, bad: str, shell_env: dict[str, str], tmp_path: Path
) -> None:
    dump, status = tmp_path / "env", tmp_path / "status"
    if shell == "fish":
        script = (
            f"{apply(shell, 'p1')}\n"
            f"set code (aiswitch preset use {bad}); set st $status\n"
            f"string join \\n -- $code | source\n"
            f"echo $st > '{status}'; count $code >> '{status}'; env -0 > '{dump}'"
        )
    else:
        script = (
            f"{apply(shell, 'p1')}\n"
            f'code="$(aiswitch preset use {bad})"; st=$?\n'
            f'eval "$code"\n'
            f"echo \"$st\" > '{status}'; printf '%s' \"$code\" | wc -c >> '{status}'\n"
            f"env -0 > '{dump}'"
        )
    proc = run_in(shell, script, shell_env)
    exit_status, printed = status.read_text().split()
    assert int(exit_status) != 0
    assert int(printed) == 0  # nothing on stdout, so nothing to evaluate
    assert "aiswitch: error:" in proc.stderr
    env = read_env0(dump)
    assert env["AISWITCH_PRESET"] == "p1" and env["ONLY_P1"] == "1"


@pytest.mark.parametrize("shell", SHELLS)
def test_the_shell_init_wrapper_applies_switches_fails_honestly_and_clears(
    shell: str, shell_env: dict[str, str], tmp_path: Path
) -> None:
    dump, cleared, status = tmp_path / "env", tmp_path / "cleared", tmp_path / "status"
    if shell == "fish":
        init = "aiswitch shell-init fish | source"
        st = "$status"
    else:
        init = f'eval "$(aiswitch shell-init {shell})"'
        st = "$?"
    script = "\n".join(
        [
            init,
            f"aiswitch preset use p1; echo {st} >> '{status}'",
            f"aiswitch preset use p2; echo {st} >> '{status}'",
            f"aiswitch preset use nosuch; echo {st} >> '{status}'",
            f"env -0 > '{dump}'",
            f"aiswitch preset clear; echo {st} >> '{status}'",
            f"env -0 > '{cleared}'",
            f"aiswitch preset list > /dev/null; echo {st} >> '{status}'",
        ]
    )
    proc = run_in(shell, script, shell_env)
    codes = [int(line) for line in status.read_text().split()]
    assert codes[:2] == [0, 0] and codes[2] != 0 and codes[3:] == [0, 0], proc.stderr
    env = read_env0(dump)
    assert env["AISWITCH_PRESET"] == "p2" and env["ONLY_P2"] == "2" and "ONLY_P1" not in env
    after = read_env0(cleared)
    for name in ("AISWITCH_PRESET", "AISWITCH_PRESET_VARS", "ONLY_P2", "SHARED", "REF"):
        assert name not in after, name
    assert not Path(shell_env["MARKER"]).exists()


def test_fish_applies_a_multi_variable_preset_through_eval_of_a_substitution(
    shell_env: dict[str, str], tmp_path: Path
) -> None:
    dump = tmp_path / "env"
    proc = run_in("fish", f"eval (aiswitch preset use p2)\nenv -0 > '{dump}'", shell_env)
    assert proc.returncode == 0, proc.stderr
    env = read_env0(dump)
    assert (env["ONLY_P2"], env["SHARED"], env["REF"]) == ("2", "from-p2", "from-the-caller")


@pytest.mark.parametrize("shell", SHELLS)
def test_a_child_started_by_run_from_that_shell_gets_the_shells_preset(
    shell: str, shell_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run.json"
    script = f"{apply(shell, 'p2')}\naiswitch run --agent mock x --json > '{out}'"
    env = {**shell_env, "MOCK_DUMP_ENV": "1", "MOCK_LATENCY": "0"}
    proc = run_in(shell, script, env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())["results"][0]
    assert result["preset"] == "p2"
    child = json.loads(result["output"])
    assert child["ONLY_P2"] == "2" and child["REF"] == "from-the-caller"
