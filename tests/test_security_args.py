"""Values that become arguments: a session id reaches a CLI as a value, never as an option.

`--resume --dangerously-skip-permissions` once reached claude's argv (codex: `resume
--dangerously-bypass-approvals-and-sandbox`, gemini: `--resume --yolo`). Each adapter now
checks the id against its CLI's format (a UUID) before it builds the command.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiswitch_adapters import claude, codex, gemini
from test_adapter_common import make_ctx

from aiswitch.adapter_sdk import TaskFailed

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
