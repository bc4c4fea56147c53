"""`aiswitch --install-completion` in real bash, zsh and fish: each installs as a user would
(the shell detected from the parent process), then a new shell of that kind, started from
the files the install wrote, completes commands, agent names, preset names, run ids and
agent process ids from the home."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aiswitch.home import Home

pytestmark = pytest.mark.shells

# Each completion is one Python start of aiswitch (~0.3 s of CPU); generous for a loaded CI.
SHELL_TIMEOUT_S = 120.0
RUN_ID = "20261204T101010Z-abc123"


@pytest.fixture
def user(home: Home, tmp_path: Path) -> dict[str, str]:
    """A user's HOME with an aiswitch home holding a preset, an agent, a run and a process."""
    home.ensure()
    (home.config / "presets.yaml").write_text(
        "version: 1\npresets:\n  mine:\n    variables: {A: '1'}\n"
    )
    (home.config / "agents.yaml").write_text("agents:\n  reviewer: {command: [true]}\n")
    (home.state / "tasks.json").write_text(json.dumps({"runs": [{"run_id": RUN_ID}]}))
    (home.state / "agents.json").write_text(
        json.dumps({"agents": {f"{RUN_ID}/mock.p7": {"agent_id": "mock.p7", "pid": 1}}})
    )
    user_home = tmp_path / "user"
    user_home.mkdir()
    return {
        "HOME": str(user_home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "AISWITCH_HOME": str(home.root),
        "LANG": "C.UTF-8",
        "SHELL": "/bin/false",  # the install must detect the shell it runs in, not this
    }


def shell(name: str, script: str, env: dict[str, str], *flags: str) -> str:
    # `; true`: a shell given one command may exec it in its place, and then aiswitch's
    # parent would be pytest, not the shell.
    done = subprocess.run(
        [name, *flags, "-c", script + "; true"],
        env=env, capture_output=True, text=True, timeout=SHELL_TIMEOUT_S, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


# What each shell completes for a command line (the word being completed last, maybe "").
ASKS = {
    "bash": "COMP_WORDS=({words}); COMP_CWORD={cword}; _aiswitch_completion aiswitch; "
    'printf "%s\\n" "${{COMPREPLY[@]}}"',
    # What zsh calls on Tab (the function autoloaded from ~/.zfunc) calls `_arguments`
    # with the candidates: the stub prints what zsh would offer.
    "zsh": '_arguments() {{ print -rl -- "$@"; }}; words=({words}); CURRENT={current}; '
    "$_comps[aiswitch]",
    "fish": "complete --do-complete {line}",
}


def complete(name: str, env: dict[str, str], *words: str) -> list[str]:
    quoted = " ".join(f"'{w}'" for w in words)
    line = "'" + " ".join(words) + "'"
    script = ASKS[name].format(words=quoted, cword=len(words) - 1, current=len(words), line=line)
    flags = ("-i",) if name in ("bash", "zsh") else ()
    out = shell(name, script, env, *flags)
    found = []
    for raw in out.splitlines():
        item = raw.split("\t")[0]
        if name == "zsh":  # `*: :(("a":"help" "b"))` -> a, b
            found += re.findall(r'"((?:[^"\\]|\\.)*)"(?::"(?:[^"\\]|\\.)*")?', item)
            continue
        if name == "fish":
            item = item.rsplit(" ", 1)[-1]
        found.append(item)
    return [f for f in found if f]


@pytest.mark.parametrize("name", ["bash", "zsh", "fish"])
def test_install_completion_then_a_new_shell_completes_from_the_home(
    name: str, user: dict[str, str]
) -> None:
    said = shell(name, "aiswitch --install-completion", user)
    assert f"{name} completion installed in " in said
    # The install is in the user's shell files, nowhere else (before any shell starts).
    written = sorted(
        str(p.relative_to(user["HOME"])) for p in Path(user["HOME"]).rglob("*") if p.is_file()
    )
    assert (
        written
        == {
            "bash": [".bash_completions/aiswitch.sh", ".bashrc"],
            "zsh": [".zfunc/_aiswitch", ".zshrc"],
            "fish": [".config/fish/completions/aiswitch.fish"],
        }[name]
    )
    assert set(complete(name, user, "aiswitch", "ru")) == {"run", "runs"}
    assert complete(name, user, "aiswitch", "runs", "show", "2026") == [RUN_ID]
    assert complete(name, user, "aiswitch", "preset", "show", "mi") == ["mine"]
    assert complete(name, user, "aiswitch", "agents", "stop", "mock") == ["mock.p7"]
    assert set(complete(name, user, "aiswitch", "run", "-p", "mock,re")) == {"mock,reviewer"}
    assert complete(name, user, "aiswitch", "run", "-a", "reviewer@mi") == ["reviewer@mine"]


_FIRST_TAB = r"""
zmodload zsh/zpty
zpty z 'zsh -i'
zpty -r z seen '*READY> *'
zpty -w -n z 'aiswitch preset show mi'$'\t'
zpty -r z seen '*mine *'
print -r -- completed
"""


def test_zsh_completes_on_the_first_tab_in_an_interactive_shell(user: dict[str, str]) -> None:
    # A real zsh line editor on a pseudo-terminal (zpty): the first Tab after the install
    # autoloads the completion function and completes (typer's own script needs two).
    shell("zsh", "aiswitch --install-completion", user)
    with open(Path(user["HOME"]) / ".zshrc", "a") as rc:
        rc.write("PS1='READY> '\n")
    assert shell("zsh", _FIRST_TAB, user).splitlines()[-1] == "completed"
