"""What the claude, codex and gemini adapters share: one place for each rule they all follow.

Contract:
- `CliSpec` names a CLI, its npm package and the oldest version the adapter supports;
  `locate_cli` finds the binary (agents.yaml `cli_path`, sent as `config.cli_path`, else
  `PATH`) and checks its version, raising `MethodError(CLI_UNAVAILABLE)` with one line
  saying what to install. The version comes from the npm package's `package.json` when
  the binary sits in one (no process start: `gemini --version` takes ~2 s), else from
  `CLI --version`.
- `permission_level` picks read-only|edit|full (task > agent config > `DEFAULT_PERMISSIONS`);
  `PERMISSION_FLAGS` is the one table of what each level means for each CLI.
- `preset_home` decides where a CLI keeps its files: `None` (the CLI's own home, untouched)
  with no preset or a subscription preset, else `$AISWITCH_HOME/homes/<cli>/<preset>/`
  (created 0700).
- `drive` (`_drive.py`) runs a CLI once and turns its events into a task's progress,
  usage and outcome.
- Every message that leaves an adapter passes `failure_text`: one line, bounded, with the
  environment's secret values and anything key-shaped masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from aiswitch.adapter_sdk import Adapter, TaskContext, TaskFailed
from aiswitch.adapter_sdk.environment import PRESET_BILLING as BILLING_ENV
from aiswitch.adapter_sdk.environment import PRESET_NAME as PRESET_ENV
from aiswitch.adapter_sdk.environment import PRESET_VARS as PRESET_VARS_ENV
from aiswitch.masking import redact_text, secret_values
from aiswitch.rpc import codes
from aiswitch.rpc.errors import MethodError

Permission = Literal["read-only", "edit", "full"]
PERMISSION_LEVELS: Final[tuple[Permission, ...]] = ("read-only", "edit", "full")
# `edit`, so that `run --parallel claude,codex "add tests"` can change files, while shell
# commands outside the workspace (codex) or needing approval (claude) stay refused.
DEFAULT_PERMISSIONS: Final[Permission] = "edit"

# What each level means for each CLI. Every entry is non-interactive: a headless run
# refuses what it may not do, it never waits for an approval nobody can give.
PERMISSION_FLAGS: Final[Mapping[str, Mapping[Permission, tuple[str, ...]]]] = {
    # dontAsk: pre-approved tools only (reads, safe commands like `ls`), the rest refused;
    # acceptEdits: file edits and filesystem commands approved; bypassPermissions: all.
    "claude": {
        "read-only": ("--permission-mode", "dontAsk"),
        "edit": ("--permission-mode", "acceptEdits"),
        "full": ("--permission-mode", "bypassPermissions"),
    },
    # codex exec never asks (approval_policy=never): the sandbox alone draws the line.
    "codex": {
        "read-only": ("--sandbox", "read-only", "-c", 'approval_policy="never"'),
        "edit": ("--sandbox", "workspace-write", "-c", 'approval_policy="never"'),
        "full": ("--dangerously-bypass-approvals-and-sandbox",),
    },
    # In -p mode gemini only offers the tools its approval mode allows without asking.
    "gemini": {
        "read-only": ("--approval-mode", "default"),
        "edit": ("--approval-mode", "auto_edit"),
        "full": ("--approval-mode", "yolo"),
    },
}

# Retries of a failed provider request. 0 makes an error a fast failed result instead of
# minutes of backoff (claude retries 10 times by default, gemini 10 attempts); the
# coordinator decides about retrying tasks. Overridable with the `max_retries` option.
DEFAULT_MAX_RETRIES: Final = 0
# `CLI --version` answers in well under a second (gemini: ~2 s); past this it is broken.
VERSION_TIMEOUT_S: Final = 8.0
# A progress line is a glimpse for the live view, not a transcript (tool results can be
# whole files).
PROGRESS_CHARS: Final = 300
# An error message is one line; the wire allows more, a terminal shows less.
ERROR_CHARS: Final = 600
# package.json sits at most this many folders above the binary in an npm install.
_PACKAGE_SEARCH_DEPTH: Final = 3
_SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)")
# Preset names as the preset store allows them: never a path, never `..`.
_PRESET_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_HOME_MODE: Final = 0o700

AISWITCH_HOME_ENV: Final = "AISWITCH_HOME"
log = logging.getLogger("aiswitch.adapter")
log_usage = logging.getLogger("aiswitch.adapter.usage")


# -- the CLI binary -------------------------------------------------------------------


@dataclass(frozen=True)
class CliSpec:
    name: str
    package: str
    min_version: str
    tested_version: str

    @property
    def install_hint(self) -> str:
        return f"npm install -g {self.package}@{self.tested_version}"


@dataclass(frozen=True)
class CliInfo:
    path: str
    version: str

    def describe(self, name: str) -> str:
        return f"{name} {self.version}"


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = _SEMVER.search(text)
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def _unavailable(message: str) -> MethodError:
    return MethodError(codes.CLI_UNAVAILABLE, message)


def package_version(binary: Path, package: str) -> str | None:
    """The version in the npm `package.json` of `package` the binary belongs to, if any."""
    try:
        current = binary.resolve().parent
    except OSError:
        return None
    for _ in range(_PACKAGE_SEARCH_DEPTH):
        manifest = current / "package.json"
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(manifest.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("name") == package:
                version = data.get("version")
                return str(version) if version else None
        current = current.parent
    return None


async def _version_output(path: str, env: Mapping[str, str]) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            path,
            "--version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        raise _unavailable(f"cannot run {path}: {exc.strerror}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), VERSION_TIMEOUT_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise _unavailable(
            f"{path} --version did not answer within {VERSION_TIMEOUT_S:g}s"
        ) from None
    if proc.returncode != 0:
        last = (err or out).decode(errors="replace").strip().splitlines()
        detail = f": {failure_text(last[-1], env)}" if last else ""
        raise _unavailable(f"{path} --version exited with {proc.returncode}{detail}")
    return out.decode(errors="replace")


def find_cli(spec: CliSpec, config: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """The binary to run: `config["cli_path"]` (agents.yaml `cli_path`), else `PATH`."""
    configured = config.get("cli_path")
    if configured:
        path = Path(str(configured)).expanduser()
        if not os.access(path, os.X_OK) or path.is_dir():
            raise _unavailable(
                f"{spec.name}: cli_path {str(path)!r} is not an executable file; "
                f"install it with `{spec.install_hint}` or fix cli_path in agents.yaml"
            )
        return str(path)
    found = shutil.which(spec.name, path=env.get("PATH"))
    if found is None:
        raise _unavailable(
            f"the {spec.name} CLI is not on PATH: install it with `{spec.install_hint}` "
            "(or set cli_path for this agent in agents.yaml)"
        )
    return found


async def locate_cli(spec: CliSpec, config: Mapping[str, Any], env: Mapping[str, str]) -> CliInfo:
    """Find the CLI and check it is at least `spec.min_version` (CLI_UNAVAILABLE if not)."""
    path = find_cli(spec, config, env)
    version = package_version(Path(path), spec.package)
    if version is None:
        version_text = await _version_output(path, env)
        parsed = parse_version(version_text)
        if parsed is None:
            raise _unavailable(
                f"cannot tell the version of {path} from {version_text.strip()[:80]!r}; "
                f"install `{spec.install_hint}`"
            )
        version = ".".join(str(part) for part in parsed)
    found = parse_version(version)
    minimum = parse_version(spec.min_version)
    if found is None or (minimum is not None and found < minimum):
        raise _unavailable(
            f"{spec.name} {version} at {path} is too old (aiswitch needs {spec.min_version} "
            f"or newer): install it with `{spec.install_hint}`"
        )
    return CliInfo(path=path, version=version)


# -- options and permissions ----------------------------------------------------------


def option(ctx: TaskContext, name: str, default: Any = None) -> Any:
    """A task option (`task.assign` options) over the agent's config (agents.yaml options)."""
    if name in ctx.options and ctx.options[name] is not None:
        return ctx.options[name]
    value = ctx.config.get(name)
    return default if value is None else value


def str_option(ctx: TaskContext, name: str) -> str | None:
    value = option(ctx, name)
    if value is None or value == "":
        return None
    if not isinstance(value, str | int | float):
        raise TaskFailed(f"option {name!r} must be a string, not {type(value).__name__}")
    return str(value)


def int_option(ctx: TaskContext, name: str, default: int | None = None) -> int | None:
    value = option(ctx, name, default)
    if value is None:
        return None
    if isinstance(value, bool):
        raise TaskFailed(f"option {name!r} must be a whole number, not {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise TaskFailed(f"option {name!r} must be a whole number, not {value!r}") from None
    if number < 0:
        raise TaskFailed(f"option {name!r} must not be negative")
    return number


def list_option(ctx: TaskContext, name: str) -> list[str]:
    """A list option; a string is split on commas and whitespace (CLI habit)."""
    value = option(ctx, name)
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in re.split(r"[,\s]+", value) if part]
    if isinstance(value, list | tuple):
        return [str(part) for part in value]
    raise TaskFailed(f"option {name!r} must be a list of strings")


# Every session id these CLIs hand out is a UUID (claude's and gemini's `session_id`, codex's
# `thread_id`); the adapter gives back only what its CLI gave. Anything else is refused before
# it reaches argv: a value read as an option there (`--resume --dangerously-skip-permissions`)
# would change what the CLI may do.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
SESSION_ID_FORMATS: Final[Mapping[str, tuple[re.Pattern[str], str]]] = {
    "claude": (_UUID, "a UUID"),
    "codex": (_UUID, "a UUID"),
    "gemini": (_UUID, "a UUID"),
}


def session_id(ctx: TaskContext, cli: str) -> str | None:
    """The session to resume, checked against `cli`'s format (so it never starts an option)."""
    value = ctx.params.session_id
    if not value:
        return None
    pattern, shape = SESSION_ID_FORMATS[cli]
    if not pattern.fullmatch(value):
        raise TaskFailed(
            f"session id {short(value, 80)!r} is not a {cli} session id ({shape}); "
            f"pass the session_id of an earlier {cli} result"
        )
    return value


def permission_level(ctx: TaskContext) -> Permission:
    """The task's `permissions`, else the agent config's, else `DEFAULT_PERMISSIONS`."""
    level: object = ctx.params.permissions or ctx.config.get("permissions") or DEFAULT_PERMISSIONS
    for known in PERMISSION_LEVELS:
        if level == known:
            return known
    raise TaskFailed(f"permissions {level!r} is not one of {', '.join(PERMISSION_LEVELS)}")


def permission_flags(cli: str, level: Permission) -> list[str]:
    return list(PERMISSION_FLAGS[cli][level])


def permission_flag(cli: str, level: Permission, flag: str) -> str | None:
    """The value `level` gives `flag` on `cli`'s command line (None when it is not given)."""
    flags = PERMISSION_FLAGS[cli][level]
    return flags[flags.index(flag) + 1] if flag in flags else None


# -- homes ----------------------------------------------------------------------------


def preset_vars(env: Mapping[str, str]) -> set[str]:
    """The variables the child's preset set (the parent lists them in AISWITCH_PRESET_VARS)."""
    return {name for name in env.get(PRESET_VARS_ENV, "").split(",") if name}


def aiswitch_home(env: Mapping[str, str]) -> Path:
    value = env.get(AISWITCH_HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".aiswitch"


def make_private_dirs(root: Path, *parts: str) -> Path:
    """`root/parts…`, each level created 0700 when missing (never loosened when present)."""
    path = root
    for part in parts:
        path = path / part
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=_HOME_MODE)
    return path


def preset_home(env: Mapping[str, str], cli: str) -> Path | None:
    """Where `cli` keeps its files for this child's preset, or None for its own home.

    None with no preset or a `billing: subscription` preset (the user's own login keeps
    working); an API-key preset (billing `api`, or unset) gets
    `$AISWITCH_HOME/homes/<cli>/<preset>/`, created 0700, so its sessions and settings
    never mix with the user's or another preset's.
    """
    preset = env.get(PRESET_ENV)
    if not preset:
        return None
    billing = env.get(BILLING_ENV) or "api"
    if billing == "subscription":
        return None
    if not _PRESET_NAME.match(preset) or preset.startswith(".."):
        raise TaskFailed(f"preset name {preset!r} cannot name a folder")
    root = aiswitch_home(env)
    try:
        root.mkdir(mode=_HOME_MODE, parents=True, exist_ok=True)
        return make_private_dirs(root, "homes", cli, preset)
    except OSError as exc:
        raise TaskFailed(f"cannot create the {cli} home for preset {preset!r}: {exc}") from None


def apply_home(env: dict[str, str], cli: str, variable: str) -> Path | None:
    """Point `variable` at the preset's home for `cli`, unless the preset set it itself.

    Returns the home in force when aiswitch chose it, else None.
    """
    if variable in preset_vars(env):
        return None
    home = preset_home(env, cli)
    if home is not None:
        env[variable] = str(home)
    return home


# -- providers and messages -----------------------------------------------------------

# Hosts of the providers in the preset templates, so the ledger says "moonshot", not
# "api.moonshot.ai". Anything else is filed under its host name.
KNOWN_HOSTS: Final[Mapping[str, str]] = {
    "api.anthropic.com": "anthropic",
    "api.openai.com": "openai",
    "generativelanguage.googleapis.com": "google",
    "api.moonshot.ai": "moonshot",
    "api.moonshot.cn": "moonshot",
    "api.deepseek.com": "deepseek",
    "open.bigmodel.cn": "zhipu",
    "api.z.ai": "zhipu",
    "openrouter.ai": "openrouter",
    "dashscope.aliyuncs.com": "qwen",
    "dashscope-intl.aliyuncs.com": "qwen",
}


def provider_name(base_url: str | None, default: str) -> str:
    """The provider a base URL points at: a known name, else its host; `default` if unset."""
    if not base_url:
        return default
    try:
        host = (urlsplit(base_url).hostname or "").lower()
    except ValueError:
        return default
    if not host:
        return default
    return KNOWN_HOSTS.get(host, host)


def failure_text(text: str, env: Mapping[str, str]) -> str:
    """One line, at most ERROR_CHARS, with the env's secrets and key-shaped words masked."""
    line = " ".join(redact_text(text, secret_values(env)).split())
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 1] + "…"


def short(text: str, limit: int = PROGRESS_CHARS) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# A CLI process per task; each is mostly waiting on its provider, so a few at once.
DEFAULT_MAX_CONCURRENT: Final = 4


class CliAdapter(Adapter):
    """What the claude, codex and gemini adapters share: the CLI found (and its version
    checked) at `agent.initialize`, resumable sessions, and a few tasks at once."""

    spec: CliSpec
    version = "1"
    max_concurrent_tasks = DEFAULT_MAX_CONCURRENT
    supports_resume = True

    def __init__(self) -> None:
        self.cli: CliInfo | None = None

    async def setup(self, params: Any) -> None:
        self.cli = await locate_cli(self.spec, params.config, os.environ)

    def cli_info(self) -> str | None:
        return self.cli.describe(self.spec.name) if self.cli else None

    def located(self) -> CliInfo:
        assert self.cli is not None, "agent.initialize comes first"
        return self.cli
