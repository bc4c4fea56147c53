"""The preset model: a named set of environment variables, and how names are checked.

A name is letters, digits, `-`, `_` and `.`, not starting with `-` or `.` (so it can
never be a path or an option). Values are literals, or references resolved at use
time: `${env:NAME}` (the caller's environment) and `${file:PATH}` (a file's content,
trailing newline removed). Any other `$` text is literal; `$${` escapes a literal `${`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aiswitch.errors import PresetError

NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_NAME_LEN = 64


def check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME_LEN or not NAME_RE.match(name):
        raise PresetError(
            f"invalid preset name {name!r}",
            hint="use letters, digits, '-', '_' and '.', not starting with '-' or '.'",
        )
    return name


def check_var(name: str) -> str:
    if not VAR_RE.match(name):
        raise PresetError(f"invalid variable name {name!r}", hint="use [A-Za-z_][A-Za-z0-9_]*")
    return name


class ModelPrice(BaseModel):
    """Per million tokens, in USD."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    variables: dict[str, str] = {}
    unset: list[str] = Field(default_factory=list, description="Variables removed from a child.")
    description: str = ""
    tags: list[str] = []
    agent: str | None = None
    model: str | None = None
    billing: Literal["api", "subscription"] | None = None
    prices: dict[str, ModelPrice] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return check_name(value)
        except PresetError as exc:
            raise ValueError(exc.message) from None

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not VAR_RE.match(name):
                raise ValueError(f"invalid variable name {name!r}")
        return value
