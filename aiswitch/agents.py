"""Agent definitions: the built-in ones, overridden and extended by `config/agents.yaml`.

An agent is any program that speaks the aiswitch protocol on stdio. `config/agents.yaml`:

    agents:
      mock:                      # override a built-in, field by field
        env: {MOCK_LATENCY: "0.2"}
      reviewer:                  # a new agent
        command: [python3, /opt/reviewer/adapter.py]
        env: {REVIEWER_MODE: strict}
        env_passthrough: [REVIEWER_TOKEN, REVIEWER_*]   # from the parent (docs/agents.md)
        max_concurrency: 2
        capabilities: [review]
        options: {model: big}    # sent in agent.initialize's `config`
        cli: reviewer-cli        # a binary that must be on PATH (checked before start)
        pool: {min: 0, max: 4, idle_timeout: 60}   # processes per agent+preset
        restart: on-failure      # or always, never
        start_timeout: 10        # seconds for agent.initialize
        start_retries: 3         # failed starts (with backoff) before it is fatal
        heartbeat_interval: 10   # agent.status every N seconds; null: none
        heartbeat_timeout: 10    # no answer within N seconds: killed and replaced
        rate: 30/min             # task starts per agent (COUNT/s, /min or /hour)
        limits:                  # per process of the agent (supervisor/rlimits.py)
          memory: 2G             # bytes, or with K, M, G (RLIMIT_DATA)
          cpu_seconds: 600       # CPU time per process (SIGXCPU, then SIGKILL)
          open_files: 1024       # RLIMIT_NOFILE
          processes: 256         # RLIMIT_NPROC (the user's processes; root is exempt)
      opencode-acp:              # an Agent Client Protocol agent (docs/acp.md)
        kind: acp                # `command` is the ACP agent; the acp adapter drives it
        command: [opencode, acp]

Errors (unreadable or invalid YAML, unknown fields, bad types) are `ConfigError`s that
name the file and, for YAML errors, the line.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aiswitch.errors import (
    AgentUnavailableError,
    ConfigError,
    UnknownAgentError,
)
from aiswitch.home import Home
from aiswitch.supervisor import limits as defaults

AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
RestartSetting = Literal["on-failure", "always", "never"]
AgentKind = Literal["adapter", "acp"]


class PoolSettings(BaseModel):
    """`pool:` of an agent: processes kept per agent+preset (supervisor/pool.py)."""

    model_config = ConfigDict(extra="forbid")

    min: int = Field(defaults.DEFAULT_POOL_MIN, ge=0)
    max: int = Field(defaults.DEFAULT_POOL_MAX, ge=1)
    idle_timeout: float = Field(defaults.DEFAULT_IDLE_TIMEOUT_S, gt=0)

    @model_validator(mode="after")
    def _min_within_max(self) -> PoolSettings:
        if self.min > self.max:
            raise ValueError(f"pool.min ({self.min}) is above pool.max ({self.max})")
        return self


_SIZE = re.compile(r"(\d+)\s*([KMGT]?)i?B?\Z", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# Below this an adapter (a Python interpreter) cannot even start.
MIN_MEMORY_BYTES = 16 << 20
# stdin, stdout, stderr, the log and what the interpreter opens at start.
MIN_OPEN_FILES = 16


class ResourceLimits(BaseModel):
    """`limits:` of an agent: applied to each of its processes (supervisor/rlimits.py)."""

    model_config = ConfigDict(extra="forbid")

    memory: int | None = Field(None, description="Bytes (or 512M, 2G) a process may allocate.")
    cpu_seconds: int | None = Field(None, ge=1, description="CPU seconds per process.")
    open_files: int | None = Field(None, ge=MIN_OPEN_FILES, description="Open files.")
    processes: int | None = Field(None, ge=1, description="The user's processes (NPROC).")

    @field_validator("memory", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if isinstance(value, str):
            found = _SIZE.match(value.strip())
            if found is None:
                raise ValueError(f"{value!r} is not a size (use bytes, or 512M, 2G)")
            value = int(found.group(1)) * _SIZE_UNITS[found.group(2).upper()]
        if isinstance(value, int) and value < MIN_MEMORY_BYTES:
            raise ValueError(f"{value} bytes is too little to start an agent (16M at least)")
        return value

    def any(self) -> bool:
        return any(v is not None for v in self.model_dump().values())


def check_rate(value: str | None) -> str | None:
    if value is not None:
        from aiswitch.rates import parse_rate

        parse_rate(value)
    return value


class AgentDef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    kind: AgentKind = Field(
        "adapter", description="adapter: `command` speaks aiswitch's protocol; acp: it speaks ACP."
    )
    command: list[str] = Field(min_length=1)
    acp_command: list[str] | None = Field(
        None, description="kind acp: the ACP agent's command (the acp adapter runs it)."
    )
    env: dict[str, str] = {}
    env_passthrough: list[str] = Field(
        [], description="Parent variables the child gets besides the allowlist (NAME or PREFIX*)."
    )
    cli: str | None = Field(None, description="The CLI binary the adapter drives.")
    cli_path: str | None = Field(None, description="Where that binary is, instead of PATH.")
    max_concurrency: int | None = Field(
        None, ge=1, description="Tasks in flight across its processes (none: its pools')."
    )
    capabilities: list[str] = []
    options: dict[str, Any] = {}
    description: str = ""
    unavailable: str | None = Field(None, description="Why it cannot run here, if it can't.")
    install: str | None = Field(None, description="How to install `cli` (said when missing).")
    pool: PoolSettings = PoolSettings()
    restart: RestartSetting = "on-failure"
    start_timeout: float = Field(defaults.DEFAULT_START_TIMEOUT_S, gt=0)
    start_retries: int = Field(defaults.DEFAULT_START_RETRIES, ge=0)
    heartbeat_interval: float | None = Field(defaults.DEFAULT_HEARTBEAT_INTERVAL_S, gt=0)
    heartbeat_timeout: float = Field(defaults.DEFAULT_HEARTBEAT_TIMEOUT_S, gt=0)
    rate: str | None = Field(None, description="Task starts allowed: COUNT/s, /min, /hour.")
    limits: ResourceLimits | None = Field(None, description="Per process: memory, CPU, files.")

    _rate = field_validator("rate")(classmethod(lambda cls, v: check_rate(v)))

    @model_validator(mode="after")
    def _acp_behind_its_adapter(self) -> AgentDef:
        # An ACP agent runs behind the acp adapter, which learns its command (and how to
        # install it) from agent.initialize's `config` (docs/acp.md).
        if self.kind != "acp":
            return self
        if self.acp_command is None:
            self.acp_command = self.command
            self.command = _adapter("acp")
        self.cli = self.cli or self.acp_command[0]
        extra: dict[str, Any] = {"acp_command": self.acp_command}
        if self.install:
            extra["acp_install"] = self.install
        self.options = {**self.options, **extra}
        return self

    @model_validator(mode="after")
    def _cli_path_in_options(self) -> AgentDef:
        # The adapter learns where its CLI is from agent.initialize's `config`, which is
        # `options`: a configured cli_path travels there (docs/agents.md).
        if self.cli_path and self.options.get("cli_path") != self.cli_path:
            self.options = {**self.options, "cli_path": self.cli_path}
        return self

    def check_available(self) -> None:
        """Raise `AgentUnavailableError` (one line: what to install) if it can't start."""
        if self.unavailable:
            raise AgentUnavailableError(f"agent {self.name!r}: {self.unavailable}")
        program = self.command[0]
        if shutil.which(program) is None:
            raise AgentUnavailableError(
                f"agent {self.name!r}: its command {program!r} is not an executable on PATH",
                hint="fix `command` for this agent in config/agents.yaml",
            )
        if self.cli is None:
            return
        path = self.cli_path or shutil.which(self.cli)
        if path is None or not Path(path).exists():
            where = f"not at {self.cli_path}" if self.cli_path else "not on PATH"
            how = f"install it with `{self.install}`" if self.install else "install it"
            raise AgentUnavailableError(
                f"agent {self.name!r} needs the {self.cli!r} CLI, which is {where}",
                hint=f"{how}, or set cli_path for this agent in config/agents.yaml",
            )


class _Override(BaseModel):
    """A user entry: every field optional, so built-ins can be changed field by field."""

    # Built on first use: only a home with config/agents.yaml reads one.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    kind: AgentKind | None = None
    command: list[str] | None = Field(None, min_length=1)
    env: dict[str, str] | None = None
    env_passthrough: list[str] | None = None
    cli: str | None = None
    cli_path: str | None = None
    max_concurrency: int | None = Field(None, ge=1)
    capabilities: list[str] | None = None
    options: dict[str, Any] | None = None
    description: str | None = None
    pool: PoolSettings | None = None
    restart: RestartSetting | None = None
    start_timeout: float | None = Field(None, gt=0)
    start_retries: int | None = Field(None, ge=0)
    heartbeat_interval: float | None = Field(None, gt=0)
    heartbeat_timeout: float | None = Field(None, gt=0)
    rate: str | None = None
    limits: ResourceLimits | None = None

    _rate = field_validator("rate")(classmethod(lambda cls, v: check_rate(v)))


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    agents: dict[str, _Override] = {}


def _adapter(module: str) -> list[str]:
    return [sys.executable, "-m", f"aiswitch_adapters.{module}"]


# The built-in real agents (adapter module and CLI binary): what they are. Their npm
# packages and tested versions are `pinned_clis()`.
_REAL_AGENTS = (
    ("claude", "Claude Code (claude -p), stream-json."),
    ("codex", "OpenAI Codex CLI (codex exec --json)."),
    ("gemini", "Gemini CLI (gemini -p -o stream-json)."),
)


def pinned_clis() -> dict[str, tuple[str, str]]:
    """CLI name -> (npm package, the version aiswitch is tested with), from
    aiswitch/data/clis.json: the one list of pins (scripts/setup/agent-clis.sh and the
    tests read it too)."""
    import json
    from importlib import resources

    data = json.loads(resources.files("aiswitch.data").joinpath("clis.json").read_text())
    return {
        name: (entry["package"], entry["version"])
        for name, entry in data.items()
        if not name.startswith("_")
    }


# Several tasks of one real agent may run at once: each is its own CLI process.
REAL_AGENT_CONCURRENCY = 4
# The built-in ACP agents (docs/acp.md): name, ACP command, npm package (pinned where
# tested), the CLI behind it whose homes and logs the adapter knows, description.
_ACP_AGENTS: tuple[tuple[str, list[str], str, str | None, str], ...] = (
    (
        "gemini-acp",
        ["gemini", "--experimental-acp"],
        "@google/gemini-cli@0.61.0",
        "gemini",
        "Gemini CLI over ACP (gemini --experimental-acp).",
    ),
    (
        "claude-acp",
        ["claude-code-acp"],
        "@zed-industries/claude-code-acp@0.16.2",
        "claude",
        "Claude Code over ACP (claude-code-acp, with the claude CLI behind it).",
    ),
    (
        "codex-acp",
        ["codex-acp"],
        "@zed-industries/codex-acp@0.16.0",
        None,
        "Codex over ACP (codex-acp).",
    ),
    ("qwen", ["qwen", "--acp"], "@qwen-code/qwen-code", None, "Qwen Code over ACP (qwen --acp)."),
    ("opencode", ["opencode", "acp"], "opencode-ai", None, "OpenCode over ACP (opencode acp)."),
)


def builtin_agents() -> dict[str, AgentDef]:
    agents = {
        "mock": AgentDef(
            name="mock",
            command=_adapter("mock"),
            # Its knobs are behaviour, not credentials: set on the parent, they reach it.
            env_passthrough=["MOCK_*"],
            description="A simulated agent: no API key, no network (docs/mock.md).",
        ),
    }
    pins = pinned_clis()
    for name, description in _REAL_AGENTS:
        package, version = pins[name]
        agents[name] = AgentDef(
            name=name,
            command=_adapter(name),
            cli=name,
            install=f"npm install -g {package}@{version}",
            max_concurrency=REAL_AGENT_CONCURRENCY,
            description=f"{description} docs/agents.md",
        )
    for name, command, package, behind, description in _ACP_AGENTS:
        agents[name] = AgentDef(
            name=name,
            kind="acp",
            command=command,
            install=f"npm install -g {package}",
            max_concurrency=REAL_AGENT_CONCURRENCY,
            options={"acp_cli": behind} if behind else {},
            description=f"{description} docs/acp.md",
        )
    return agents


def load_yaml(path: Path) -> Any:
    """Parse a YAML config file (None when it does not exist); errors name the file and
    line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    from aiswitch.yaml_text import parse

    try:
        return parse(text)
    except Exception as exc:
        # PyYAML is imported here only when it failed (a remembered document needs none).
        import yaml

        if isinstance(exc, yaml.MarkedYAMLError):
            mark = exc.problem_mark
            where = f"line {mark.line + 1}" if mark is not None else "somewhere"
            raise ConfigError(f"{path}: invalid YAML at {where}: {exc.problem}") from None
        if isinstance(exc, yaml.YAMLError):
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
        raise


def validation_summary(exc: ValidationError) -> str:
    """The first problem of a validation error, as `field.path: message` (no values)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "file"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


SectionModel = TypeVar("SectionModel", bound=BaseModel)


def coordination_section(config_dir: Path, key: str, model: type[SectionModel]) -> SectionModel:
    """The `key:` section of `config_dir/coordination.yaml` as `model` (its defaults when the
    file or the section is absent); a bad value is a one-line `ConfigError` naming the file
    and the field."""
    path = config_dir / "coordination.yaml"
    data = load_yaml(path)
    section = data.get(key) if isinstance(data, dict) else None
    if section is None:
        return model()
    try:
        return model.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {key}.{validation_summary(exc)}") from None


class AgentRegistry:
    def __init__(self, agents: dict[str, AgentDef]) -> None:
        self.agents = agents

    @classmethod
    def load(cls, home: Home | None = None) -> AgentRegistry:
        home = home or Home.current()
        agents = builtin_agents()
        path = home.config / "agents.yaml"
        data = load_yaml(path)
        if data is None:
            return cls(agents)
        try:
            parsed = _File.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{path}: {validation_summary(exc)}") from None
        for name, override in parsed.agents.items():
            if not AGENT_NAME.match(name):
                raise ConfigError(f"{path}: invalid agent name {name!r}")
            fields = override.model_dump(exclude_unset=True)
            base = agents.get(name)
            if base is None:
                if "command" not in fields:
                    raise ConfigError(f"{path}: agent {name!r} needs a `command`")
                agents[name] = AgentDef(name=name, **fields)
            else:
                merged = base.model_dump()
                if fields.get("kind", base.kind) == "acp" and "command" in fields:
                    # A new ACP command: the validator puts the acp adapter in front of it.
                    merged.update(acp_command=None, cli=None, unavailable=None)
                    merged["options"] = {
                        k: v for k, v in base.options.items() if k != "acp_command"
                    }
                if "command" in fields:
                    merged["unavailable"] = None
                if "env" in fields:
                    merged["env"] = {**base.env, **fields.pop("env")}
                if "env_passthrough" in fields:
                    extra = fields.pop("env_passthrough")
                    merged["env_passthrough"] = list(dict.fromkeys([*base.env_passthrough, *extra]))
                merged.update(fields)
                agents[name] = AgentDef.model_validate(merged)
        return cls(agents)

    def get(self, name: str) -> AgentDef:
        agent = self.agents.get(name)
        if agent is None:
            known = ", ".join(sorted(self.agents))
            raise UnknownAgentError(f"unknown agent {name!r}", hint=f"known agents: {known}")
        return agent
