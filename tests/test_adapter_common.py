"""The adapters' shared rules: finding the CLI, permissions, homes, providers, messages,
and `drive` running a fake CLI at the process seam (no network, no real CLI)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiswitch_adapters import _common, _drive
from aiswitch_adapters._common import (
    CliSpec,
    apply_home,
    failure_text,
    locate_cli,
    parse_version,
    permission_level,
    preset_home,
    provider_name,
)
from aiswitch_adapters._drive import (
    Exit,
    Progress,
    Report,
    drive,
)
from aiswitch_adapters._usage import UsageReport

from aiswitch.adapter_sdk import TaskContext, TaskFailed
from aiswitch.protocol.models import AssignParams
from aiswitch.rpc import codes
from aiswitch.rpc.errors import MethodError
from aiswitch.tokens.usage import Usage

STEP_S = 15.0
SPEC = CliSpec(
    name="fakecli", package="@example/fakecli", min_version="1.2.0", tested_version="1.4.2"
)


class FakePeer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        # Called with each notification as it is sent (a test reacts to an event there).
        self.on_sent: Callable[[str, Any], None] | None = None
        self._changed = asyncio.Event()

    async def notify(self, method: str, params: Any, *, hold: bool = False) -> None:
        self.sent.append((method, params))
        self._changed.set()
        if self.on_sent is not None:
            self.on_sent(method, params)

    async def until(self, seen: Callable[[list[tuple[str, Any]]], bool]) -> None:
        """Wait until what was sent so far satisfies `seen` (woken by each notification)."""
        while not seen(self.sent):
            self._changed.clear()
            await self._changed.wait()


class FakeServer:
    def __init__(self) -> None:
        self.peer = FakePeer()
        self.metrics_usage = Usage()

    def add_metrics_usage(self, usage: Usage) -> None:
        self.metrics_usage = self.metrics_usage + usage


def make_ctx(
    env: dict[str, str] | None = None,
    config: dict[str, Any] | None = None,
    **params: Any,
) -> TaskContext:
    assign = AssignParams(task_id="t1", prompt=params.pop("prompt", "do it"), **params)
    return TaskContext(
        params=assign,
        env=dict(env or {}),
        preset=None,
        agent_id="fake#1",
        config=dict(config or {}),
        _server=FakeServer(),  # type: ignore[arg-type]
    )


def write_script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body), encoding="utf-8")
    path.chmod(0o755)
    return path


# -- the CLI binary -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.1.197 (Claude Code)", (2, 1, 197)),
        ("codex-cli 0.169.0", (0, 169, 0)),
        ("0.61.0\n", (0, 61, 0)),
        ("no version here", None),
    ],
)
def test_versions_are_read_from_what_each_cli_prints(
    text: str, expected: tuple[int, int, int] | None
) -> None:
    assert parse_version(text) == expected


async def test_a_missing_cli_is_cli_unavailable_with_the_npm_command_to_install_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(MethodError) as caught:
        await locate_cli(SPEC, {}, {"PATH": str(tmp_path)})
    assert caught.value.code == codes.CLI_UNAVAILABLE
    assert "npm install -g @example/fakecli@1.4.2" in caught.value.message
    assert "\n" not in caught.value.message


async def test_a_cli_older_than_the_minimum_is_refused_with_what_to_install(
    tmp_path: Path,
) -> None:
    write_script(tmp_path / "fakecli", 'print("fakecli 1.1.9")\n')
    with pytest.raises(MethodError) as caught:
        await locate_cli(SPEC, {}, {"PATH": str(tmp_path)})
    assert caught.value.code == codes.CLI_UNAVAILABLE
    assert "1.1.9" in caught.value.message and "too old" in caught.value.message
    assert "npm install -g @example/fakecli@1.4.2" in caught.value.message


async def test_the_version_comes_from_the_npm_package_json_without_starting_the_cli(
    tmp_path: Path,
) -> None:
    package = tmp_path / "node_modules" / "@example" / "fakecli"
    (package / "bin").mkdir(parents=True)
    manifest = {"name": "@example/fakecli", "version": "1.3.0"}
    (package / "package.json").write_text(json.dumps(manifest))
    # Running it would fail: the version must come from package.json.
    write_script(package / "bin" / "fakecli.js", "raise SystemExit(9)\n")
    bin_dir = tmp_path / "node_modules" / ".bin"
    bin_dir.mkdir()
    (bin_dir / "fakecli").symlink_to(package / "bin" / "fakecli.js")

    info = await locate_cli(SPEC, {}, {"PATH": str(bin_dir)})

    assert info.version == "1.3.0"
    assert info.path == str(bin_dir / "fakecli")


async def test_cli_path_from_the_agent_config_wins_over_path(tmp_path: Path) -> None:
    chosen = write_script(tmp_path / "my-fakecli", 'print("1.4.2")\n')
    info = await locate_cli(SPEC, {"cli_path": str(chosen)}, {"PATH": "/nonexistent"})
    assert info.path == str(chosen)
    with pytest.raises(MethodError, match="cli_path"):
        await locate_cli(SPEC, {"cli_path": str(tmp_path / "nope")}, {"PATH": ""})


# -- permissions ----------------------------------------------------------------------


def test_permissions_default_to_edit_and_the_task_wins_over_the_agent_config() -> None:
    assert permission_level(make_ctx()) == "edit"
    assert permission_level(make_ctx(config={"permissions": "read-only"})) == "read-only"
    assert permission_level(make_ctx(config={"permissions": "edit"}, permissions="full")) == "full"
    with pytest.raises(TaskFailed, match="permissions"):
        permission_level(make_ctx(config={"permissions": "everything"}))


def test_every_cli_maps_every_permission_level_to_non_interactive_flags() -> None:
    for cli in ("claude", "codex", "gemini"):
        assert set(_common.PERMISSION_FLAGS[cli]) == set(_common.PERMISSION_LEVELS)


# -- homes ----------------------------------------------------------------------------


def test_without_a_preset_or_with_a_subscription_preset_the_cli_keeps_its_own_home(
    tmp_path: Path,
) -> None:
    base = {"AISWITCH_HOME": str(tmp_path)}
    assert preset_home(base, "claude") is None
    subscription = {**base, "AISWITCH_PRESET": "mine", "AISWITCH_PRESET_BILLING": "subscription"}
    assert preset_home(subscription, "claude") is None
    assert not (tmp_path / "homes").exists()


def test_an_api_key_preset_gets_a_private_home_per_cli_and_preset(tmp_path: Path) -> None:
    env = {"AISWITCH_HOME": str(tmp_path), "AISWITCH_PRESET": "kimi"}
    home = preset_home(env, "claude")
    assert home == tmp_path / "homes" / "claude" / "kimi"
    for folder in (tmp_path / "homes", tmp_path / "homes" / "claude", home):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    # An explicit `api` billing is the same.
    api = {**env, "AISWITCH_PRESET_BILLING": "api"}
    assert preset_home(api, "codex") == tmp_path / "homes" / "codex" / "kimi"


def test_a_home_variable_the_preset_sets_itself_is_left_alone(tmp_path: Path) -> None:
    env = {
        "AISWITCH_HOME": str(tmp_path),
        "AISWITCH_PRESET": "kimi",
        "AISWITCH_PRESET_VARS": "ANTHROPIC_API_KEY,CLAUDE_CONFIG_DIR",
        "CLAUDE_CONFIG_DIR": "/custom/claude",
    }
    assert apply_home(env, "claude", "CLAUDE_CONFIG_DIR") is None
    assert env["CLAUDE_CONFIG_DIR"] == "/custom/claude"
    inherited = {**env, "AISWITCH_PRESET_VARS": "ANTHROPIC_API_KEY"}
    assert apply_home(inherited, "claude", "CLAUDE_CONFIG_DIR") is not None
    assert inherited["CLAUDE_CONFIG_DIR"] == str(tmp_path / "homes" / "claude" / "kimi")


def test_a_preset_name_that_is_a_path_never_names_a_folder(tmp_path: Path) -> None:
    env = {"AISWITCH_HOME": str(tmp_path), "AISWITCH_PRESET": "../../etc"}
    with pytest.raises(TaskFailed, match="cannot name a folder"):
        preset_home(env, "claude")


# -- providers and messages -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, "anthropic"),
        ("https://api.moonshot.ai/anthropic", "moonshot"),
        ("https://api.openai.com/v1", "openai"),
        ("http://127.0.0.1:8123/v1", "127.0.0.1"),
        ("not a url", "anthropic"),
    ],
)
def test_the_provider_is_named_after_the_base_url_host(url: str | None, expected: str) -> None:
    assert provider_name(url, "anthropic") == expected


def test_failure_messages_are_one_line_without_the_environments_secrets() -> None:
    env = {"ANTHROPIC_API_KEY": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123"}
    text = "401 for key sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123\nplease check it"
    line = failure_text(text, env)
    assert "abcdefghijklmnop" not in line
    assert "\n" not in line
    assert line.startswith("401 for key sk-ant-")


# -- drive: a fake CLI at the process seam --------------------------------------------


class EchoTranslator:
    """Progress for every event with `text`; ok when a `done` event came."""

    def __init__(self) -> None:
        self.session_id: str | None = "s-1"
        self.done = False

    def feed(self, event: dict[str, Any]) -> list[Report]:
        if event.get("type") == "done":
            self.done = True
            return [UsageReport(Usage(input_tokens=3, output_tokens=2), model="m")]
        return [Progress(str(event.get("text", "")))]

    def finish(self, end: Exit) -> Any:
        from aiswitch.adapter_sdk import TaskOutcome

        if not self.done:
            raise TaskFailed(_drive.exit_failure("fakecli", end))
        return TaskOutcome(output="ok", session_id=self.session_id)


FAKE_CLI = """
import json, os, sys, time
print("warming up, not JSON", flush=True)
print(json.dumps({"type": "step", "text": sys.stdin.read()}), flush=True)
mode = sys.argv[1]
if mode == "ok":
    print(json.dumps({"type": "done"}), flush=True)
elif mode == "dies":
    key = os.environ["ANTHROPIC_API_KEY"]
    sys.stderr.write(f"fatal: the provider key {key} is bad\\n")
    sys.exit(2)
elif mode == "hangs":
    print(json.dumps({"type": "step", "text": str(os.getpid())}), flush=True)
    time.sleep(600)
"""


async def test_drive_relays_progress_and_usage_and_skips_lines_that_are_not_json(
    tmp_path: Path,
) -> None:
    cli = write_script(tmp_path / "fakecli", FAKE_CLI)
    ctx = make_ctx()
    async with asyncio.timeout(STEP_S):
        outcome = await drive(
            ctx,
            [str(cli), "ok"],
            os.environ,
            EchoTranslator(),
            name="fakecli",
            provider="p",
            stdin_data=b"the prompt",
        )
    assert outcome.output == "ok"
    sent = ctx._server.peer.sent  # type: ignore[attr-defined]
    assert [m for m, _ in sent] == ["task.progress", "tokens.usage"]
    assert sent[0][1].text == "the prompt"
    assert sent[1][1].provider == "p" and sent[1][1].session_id == "s-1"


class RunningTranslator(EchoTranslator):
    """EchoTranslator that also shows running totals, as claude's `assistant` events do."""

    SO_FAR = (Usage(input_tokens=3, output_tokens=1), Usage(input_tokens=3, output_tokens=2))

    def feed(self, event: dict[str, Any]) -> list[Report]:
        reports = super().feed(event)
        so_far = self.SO_FAR[1 if self.done else 0]
        return [_drive.RunningUsage(so_far), *reports]


async def test_drive_sends_running_totals_on_progress_and_records_only_the_usage(
    tmp_path: Path,
) -> None:
    cli = write_script(tmp_path / "fakecli", FAKE_CLI)
    ctx = make_ctx()
    async with asyncio.timeout(STEP_S):
        await drive(
            ctx,
            [str(cli), "ok"],
            os.environ,
            RunningTranslator(),
            name="fakecli",
            provider="p",
            stdin_data=b"the prompt",
            per_request=lambda translator, stream: None,  # held until the end, then as is
        )
    sent = ctx._server.peer.sent  # type: ignore[attr-defined]
    assert [m for m, _ in sent] == ["task.progress", "task.progress", "tokens.usage"]
    first, alone, usage = (params for _, params in sent)
    # With a line of progress, the totals ride on it; without one, they go alone.
    assert (first.text, first.usage) == ("the prompt", RunningTranslator.SO_FAR[0])
    assert (alone.text, alone.usage) == ("", RunningTranslator.SO_FAR[1])
    assert usage.usage == Usage(input_tokens=3, output_tokens=2)
    # Provisional figures are not the task's usage: only what was recorded is.
    assert ctx.usage == usage.usage and ctx.last_progress == "the prompt"


async def test_a_cli_that_exits_before_its_result_fails_with_its_last_stderr_line_redacted(
    tmp_path: Path,
) -> None:
    cli = write_script(tmp_path / "fakecli", FAKE_CLI)
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123"}
    async with asyncio.timeout(STEP_S):
        with pytest.raises(TaskFailed) as caught:
            await drive(
                make_ctx(),
                [str(cli), "dies"],
                env,
                EchoTranslator(),
                name="fakecli",
                provider="p",
                stdin_data=b"",
            )
    message = caught.value.message
    assert message.startswith("fakecli exited with code 2: fatal: the provider key sk-ant-")
    assert "abcdefghijklmnop" not in message


async def test_a_timeout_kills_the_cli_that_never_answers(tmp_path: Path) -> None:
    cli = write_script(tmp_path / "fakecli", FAKE_CLI)
    ctx = make_ctx()
    peer: FakePeer = ctx._server.peer  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        # STEP_S only stops a hung test. The task's timeout runs out once the CLI hangs (it
        # told its pid), not a fixed time after its start, which load may delay past it.
        async with asyncio.timeout(STEP_S) as timeout:

            def hung(method: str, params: Any) -> None:
                if method == "task.progress" and params.text.isdigit():
                    timeout.reschedule(loop.time())

            peer.on_sent = hung
            await drive(
                ctx,
                [str(cli), "hangs"],
                os.environ,
                EchoTranslator(),
                name="fakecli",
                provider="p",
                stdin_data=b"",
            )
    texts = [p.text for m, p in peer.sent if m == "task.progress"]
    assert texts and texts[-1].isdigit(), texts
    pid = int(texts[-1])
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
