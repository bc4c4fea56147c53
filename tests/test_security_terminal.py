"""What agents print reaches a terminal as text: never markup, never a control sequence."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from support.cli import run_cli

from aiswitch.cli.live import LiveView
from aiswitch.cli.terminal import safe_text
from aiswitch.coordinator.coordinator import Coordinator
from aiswitch.coordinator.request import RunRequest
from aiswitch.coordinator.results import TaskStatus
from aiswitch.coordinator.specs import parse_specs
from aiswitch.home import Home

HOSTILE = "\x1b]52;c;aGk=\x07clip \x1b]0;title\x07 \x1b[2Jclear \x9b31m \u202eevil"
ESC = "\x1b"


def test_control_and_bidi_characters_are_shown_escaped_and_newlines_kept() -> None:
    text = safe_text(HOSTILE + "\nnext\tline")
    assert ESC not in text and "\x07" not in text and "\x9b" not in text
    assert "\u202e" not in text
    assert "\\x1b]52;c;aGk=\\x07clip" in text and "\\u202e" in text
    assert text.endswith("\nnext\tline")


def test_markup_in_agent_text_is_printed_literally_in_the_live_view(home: Home) -> None:
    console = Console(file=io.StringIO(), width=200, force_terminal=True)
    coordinator = Coordinator(home, parent_env=dict(os.environ))
    run = coordinator.new_run(
        RunRequest(mode="single", specs=parse_specs("mock"), prompt="review [/tmp/x] please")
    )
    (result,) = run.result.results
    view = LiveView(console, run)
    result.status = TaskStatus.RUNNING
    view.event("progress", result, "working on [/tmp/x] and [red]this[/red] " + HOSTILE)
    console.print(view.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[/tmp/x]" in text and "[red]this[/red]" in text
    # The only escape sequences left are the console's own styling (CSI ... m).
    assert "\x1b]" not in text and "\x1b[2J" not in text


def test_plain_output_shows_markup_and_escapes_from_agents_as_text(env: dict[str, str]) -> None:
    env["MOCK_OUTPUT"] = "[red]styled?[/red] " + HOSTILE
    out = run_cli("run", "--parallel", "mock,mock", "x", env=env)
    assert out.code == 0, out.stderr
    assert "[red]styled?[/red]" in out.stdout
    # Not a terminal, so no styling either: not one escape byte reaches the output.
    assert ESC not in out.stdout and ESC not in out.stderr
    assert "\\x1b]52;c;aGk=\\x07clip" in out.stdout


def test_a_bad_option_value_with_markup_is_a_failed_task_not_a_crash(env: dict[str, str]) -> None:
    env["MOCK_LATENCY"] = "[/tmp/x]"
    out = run_cli("run", "--agent", "mock", "x", env=env)
    assert out.code == 1
    assert "Traceback" not in out.stderr and "MarkupError" not in out.stderr
    assert "[/tmp/x]" in out.stdout + out.stderr


def test_json_keeps_agent_text_exactly_as_json_escapes_it(env: dict[str, str]) -> None:
    env["MOCK_OUTPUT"] = HOSTILE
    out = run_cli("run", "--agent", "mock", "x", "--json", env=env)
    assert ESC not in out.stdout  # JSON escapes control characters itself
    assert json.loads(out.stdout)["results"][0]["output"] == HOSTILE


def test_an_error_line_quoting_an_agents_log_is_safe_for_the_terminal(
    env: dict[str, str], home: Home, tmp_path: Path
) -> None:
    # An agent that writes an escape sequence to its log and dies before its handshake:
    # the failure quotes the log's last line.
    script = tmp_path / "hostile.py"
    script.write_text("import sys\nsys.stderr.write('\\x1b]0;pwned\\x07 bye\\n')\nsys.exit(3)\n")
    home.ensure()
    (home.config / "agents.yaml").write_text(
        f"agents:\n  hostile:\n    command: [{sys.executable}, {script}]\n"
    )
    out = run_cli("run", "--agent", "hostile", "x", env=env)
    assert "pwned" in out.stdout + out.stderr
    assert ESC not in out.stdout and ESC not in out.stderr
