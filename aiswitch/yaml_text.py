"""YAML read one way: PyYAML's safe loader, on libyaml's parser when PyYAML was built with it.

Every YAML document aiswitch reads (config files, presets, plans, prices) goes through
`parse`. libyaml's `CSafeLoader` parses ~20x faster than the pure-Python `SafeLoader` (the
built-in presets, read on every run: ~0.4 ms against ~9 ms) and builds the same values (the
constructor and resolver are the safe loader's). Errors are `yaml.YAMLError`s, as from
`yaml.safe_load`. PyYAML is imported on the first call, not before: a run whose home has
no config file may not need it at all.
"""

from __future__ import annotations

from typing import Any


def parse(text: str) -> Any:
    """The value of the YAML document `text` (None for an empty one)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
