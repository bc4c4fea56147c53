"""The preset store: user presets and defaults in `config/presets.yaml`, plus the built-ins.

Layout of `config/presets.yaml` (mode 0600, in the 0700 `config/` directory):

    version: 1
    presets:
      kimi:                          # the name is the key
        description: Kimi K2 through its Anthropic-compatible endpoint
        agent: claude
        variables:
          ANTHROPIC_BASE_URL: https://api.moonshot.ai/anthropic
          ANTHROPIC_AUTH_TOKEN: ${env:MOONSHOT_API_KEY}
    defaults:
      global: kimi                   # `preset default kimi`
      agents: {codex: openai}        # `preset default openai --agent codex`

Contract:

- Reads parse the whole file; invalid YAML is a `ConfigError` naming the file and line, an
  invalid entry one naming the file and the field. The file is never changed by a read, and
  a file that fails to parse is never rewritten (every change starts with a read).
- `modify` is the one way to change the file: it takes the `presets` lock, reads, applies a
  change, and writes the result atomically (temp file, fsync, rename; `StateStore`), all
  inside the lock. A change that raises writes nothing. So concurrent `preset add`s from
  many processes lose nothing.
- Built-in presets are visible through `get`/`all` and read-only: no user preset may take a
  built-in's name, and changing a built-in is a `PresetError` with a hint to copy it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aiswitch.errors import ConfigError, PresetError
from aiswitch.home import Home
from aiswitch.presets.model import Preset, check_name

STORE_FILE: Final = "presets.yaml"
LOCK_RESOURCE: Final = "presets"
FORMAT_VERSION: Final = 1
# YAML folds long lines at 80 columns by default; a folded value reads back the same, but
# unfolded files diff and grep better. Keys and URLs are far shorter than this.
_YAML_WIDTH: Final = 4096
_HEADER: Final = (
    "# aiswitch presets: change them with `aiswitch preset …` (docs/presets.md).\n"
    "# Values may be references: ${env:NAME} or ${file:/path}; $${ is a literal ${.\n"
)

T = TypeVar("T")


class _Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    global_: str | None = Field(None, alias="global")
    agents: dict[str, str] = {}


class _File(BaseModel):
    # Built on first use: only a home with config/presets.yaml reads one.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    version: int = FORMAT_VERSION
    presets: dict[str, dict[str, Any]] = {}
    defaults: _Defaults = _Defaults()


@dataclass
class Defaults:
    global_: str | None = None
    agents: dict[str, str] = field(default_factory=dict)

    def uses(self, name: str) -> list[str]:
        """How `name` is a default: `global`, `agent codex`, … (empty when it is not)."""
        found = ["global"] if self.global_ == name else []
        found += [
            f"agent {agent}" for agent, preset in sorted(self.agents.items()) if preset == name
        ]
        return found


@dataclass
class StoreData:
    """The parsed user file: presets in file order, and the defaults."""

    presets: dict[str, Preset] = field(default_factory=dict)
    defaults: Defaults = field(default_factory=Defaults)


def builtin_presets() -> dict[str, Preset]:
    from aiswitch.presets.builtin import builtin_presets as load

    return load()


def unknown_preset(name: str) -> PresetError:
    return PresetError(f"unknown preset {name!r}", hint="`aiswitch preset list` shows the presets")


class PresetStore:
    def __init__(self, home: Home | None = None) -> None:
        self.home = home or Home.current()

    @property
    def path(self) -> Path:
        return self.home.config / STORE_FILE

    # --- reading -------------------------------------------------------------------------

    def load(self) -> StoreData:
        """The user file, parsed and checked (missing file: empty)."""
        from aiswitch.agents import load_yaml, validation_summary

        raw = load_yaml(self.path)
        if raw is None:
            return StoreData()
        if not isinstance(raw, dict):
            raise ConfigError(f"{self.path}: expected a mapping with `presets:` at the top")
        try:
            parsed = _File.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{self.path}: {validation_summary(exc)}") from None
        if parsed.version > FORMAT_VERSION:
            raise ConfigError(
                f"{self.path}: format version {parsed.version} is newer than this aiswitch reads",
                hint="upgrade aiswitch",
            )
        builtins = builtin_presets()
        data = StoreData(defaults=Defaults(parsed.defaults.global_, dict(parsed.defaults.agents)))
        for name, body in parsed.presets.items():
            where = f"{self.path}: preset {name!r}"
            if not isinstance(body, dict):
                raise ConfigError(f"{where}: expected a mapping")
            if "name" in body:
                raise ConfigError(f"{where}: `name` is the key, not a field")
            try:
                preset = Preset.model_validate({"name": name, **body})
            except ValidationError as exc:
                raise ConfigError(f"{where}: {validation_summary(exc)}") from None
            if name in builtins:
                raise ConfigError(f"{where}: that is the name of a built-in preset")
            data.presets[name] = preset
        return data

    def all(self, data: StoreData | None = None) -> dict[str, Preset]:
        """Built-in and user presets, by name (built-ins first, each group in name order)."""
        data = self.load() if data is None else data
        merged = dict(sorted(builtin_presets().items()))
        merged.update(sorted(data.presets.items()))
        return merged

    def get(self, name: str, data: StoreData | None = None) -> Preset:
        check_name(name)
        found = self.all(data).get(name)
        if found is None:
            raise unknown_preset(name)
        return found

    @staticmethod
    def is_builtin(name: str) -> bool:
        return name in builtin_presets()

    # --- writing -------------------------------------------------------------------------

    def modify(self, change: Callable[[StoreData], T]) -> T:
        """Read, `change` (in place) and write the file, all inside the store's lock."""
        from aiswitch.state.store import StateStore

        state = StateStore(self.home)
        with state.lock(LOCK_RESOURCE):
            data = self.load()
            result = change(data)
            state.write_bytes(self.path, self.dump(data).encode("utf-8"))
        return result

    @staticmethod
    def dump(data: StoreData) -> str:
        import yaml

        defaults: dict[str, Any] = {}
        if data.defaults.global_ is not None:
            defaults["global"] = data.defaults.global_
        if data.defaults.agents:
            defaults["agents"] = dict(sorted(data.defaults.agents.items()))
        document: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "presets": {name: p.body() for name, p in sorted(data.presets.items())},
        }
        if defaults:
            document["defaults"] = defaults
        text = yaml.safe_dump(
            document,
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
            width=_YAML_WIDTH,
        )
        return _HEADER + text


# --- changes, each a function of StoreData so that it runs inside `modify` ------------------


def writable(data: StoreData, name: str) -> Preset:
    """The user preset `name`, or a PresetError (built-in or unknown)."""
    check_name(name)
    if name in builtin_presets():
        raise PresetError(
            f"preset {name!r} is built in and read-only",
            hint=f"copy it first: aiswitch preset copy {name} NEW",
        )
    found = data.presets.get(name)
    if found is None:
        raise unknown_preset(name)
    return found


def ensure_free(data: StoreData, name: str) -> None:
    check_name(name)
    if name in builtin_presets():
        raise PresetError(f"preset {name!r} is the name of a built-in preset", hint="pick another")
    if name in data.presets:
        raise PresetError(
            f"preset {name!r} already exists", hint="change it with `aiswitch preset set`"
        )


def check_not_in_use(data: StoreData, name: str, current: str | None, action: str) -> None:
    """Refuse to remove or rename a preset that is current in this shell or a default."""
    if current == name:
        raise PresetError(
            f"cannot {action} preset {name!r}: it is applied in this shell",
            hint="run `aiswitch preset clear` (or apply another preset) first",
        )
    uses = data.defaults.uses(name)
    if uses:
        how = ", ".join(uses)
        raise PresetError(
            f"cannot {action} preset {name!r}: it is a default ({how})",
            hint="change the default with `aiswitch preset default` first",
        )


def replace_all(data: StoreData, presets: Iterable[Preset]) -> None:
    for preset in presets:
        if preset.name in builtin_presets():
            raise PresetError(f"preset {preset.name!r} is the name of a built-in preset")
        data.presets[preset.name] = preset
