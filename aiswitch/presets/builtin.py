"""The built-in presets shipped in the package (`presets/*.yaml`, installed as
`aiswitch_presets`). Read-only; user presets live in the store under `config/`."""

from __future__ import annotations

from functools import cache

from pydantic import ValidationError

from aiswitch.errors import ConfigError
from aiswitch.presets.model import Preset


@cache
def builtin_presets() -> dict[str, Preset]:
    from importlib.resources import files

    import yaml

    presets: dict[str, Preset] = {}
    for entry in sorted(files("aiswitch_presets").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        try:
            preset = Preset.model_validate(yaml.safe_load(entry.read_text(encoding="utf-8")))
        except (yaml.YAMLError, ValidationError) as exc:
            raise ConfigError(f"built-in preset {entry.name} is invalid: {exc}") from None
        presets[preset.name] = preset
    return presets
