"""References inside preset values, resolved at use time.

Contract:

- `${env:NAME}` is the caller's environment variable NAME; `${file:PATH}` is the content of
  the file at PATH (absolute, or starting with `~`), with one trailing newline removed.
- `$${` is a literal `${`. Every other `$` text (`$HOME`, `${HOME}`, `$(…)`) is literal:
  presets are never interpreted by a shell, so nothing else needs escaping.
- Text that starts like a reference (`${env:` or `${file:`) but is not a complete, valid one
  is an error when the preset is saved (`check_value`), not a literal: it is almost always
  a typo, and silently sending `${env:ANTHROPIC_KEY` as a key would be worse.
- `${file:}` reads regular files only (after following symlinks): a FIFO, a device or a
  directory is an error, never a read that blocks.
- Resolution errors (`PresetError`) name the preset, the variable and the missing variable
  or file, never a value.
- `resolve_variables` remembers (`masking.remember_secrets`) every resolved value in a
  secret position (a variable `masking.should_mask` picks) and each reference's part of
  it, so this process masks them by value wherever they show up.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from aiswitch.errors import PresetError

ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# `$${` (an escaped `${`) or the start of a reference.
_TOKEN_RE: Final = re.compile(r"\$\$\{|\$\{(env|file):")
# A key file holds a key, not a document: a bigger file is almost surely the wrong path.
MAX_REFERENCE_FILE_BYTES: Final = 64 * 1024

RefKind = Literal["env", "file"]


@dataclass(frozen=True)
class Ref:
    kind: RefKind
    target: str

    def __str__(self) -> str:
        return f"${{{self.kind}:{self.target}}}"


Part = str | Ref


class ReferenceSyntaxError(ValueError):
    """A value that starts a reference but does not finish one (see the module docstring)."""


def parse(value: str) -> list[Part]:
    """`value` as literal text and references, in order (adjacent literals merged)."""
    parts: list[Part] = []
    literal: list[str] = []
    pos = 0
    for match in _TOKEN_RE.finditer(value):
        if match.start() < pos:
            continue  # inside a reference already consumed
        literal.append(value[pos : match.start()])
        if match.group(0) == "$${":
            literal.append("${")
            pos = match.end()
            continue
        kind: RefKind = "env" if match.group(1) == "env" else "file"
        end = value.find("}", match.end())
        if end < 0:
            raise ReferenceSyntaxError(
                f"unterminated ${{{kind}:…}} reference (write $${{ for a literal ${{)"
            )
        target = value[match.end() : end]
        _check_target(kind, target)
        text = "".join(literal)
        if text:
            parts.append(text)
        literal = []
        parts.append(Ref(kind, target))
        pos = end + 1
    literal.append(value[pos:])
    text = "".join(literal)
    if text:
        parts.append(text)
    return parts


def _check_target(kind: RefKind, target: str) -> None:
    if kind == "env":
        if not ENV_NAME_RE.match(target):
            raise ReferenceSyntaxError(
                f"${{env:{target}}} does not name a variable (use ${{env:NAME}})"
            )
        return
    if not target:
        raise ReferenceSyntaxError("${file:} needs a path")
    if not (target.startswith(("/", "~"))):
        # Relative to what? The cwd of whoever uses the preset differs from run to run.
        raise ReferenceSyntaxError(f"${{file:{target}}} must be an absolute path (or start with ~)")


def check_value(value: str) -> str:
    """`value` when its references are well formed; ReferenceSyntaxError otherwise."""
    if "\0" in value:
        raise ReferenceSyntaxError("contains a NUL character, which no environment can hold")
    parse(value)
    return value


def references(value: str) -> list[Ref]:
    return [part for part in parse(value) if isinstance(part, Ref)]


def is_pure_reference(value: str) -> bool:
    """Whether `value` is exactly one reference: it shows where a secret is, not the secret."""
    try:
        parts = parse(value)
    except ReferenceSyntaxError:
        return False
    return len(parts) == 1 and isinstance(parts[0], Ref)


def _read_file(ref: Ref, where: str) -> str:
    path = Path(ref.target).expanduser()
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PresetError(f"{where}: {ref} refers to a file that does not exist") from None
    except OSError as exc:
        raise PresetError(f"{where}: cannot read {ref}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PresetError(
                f"{where}: {ref} is not a regular file",
                hint="point it at a file that holds only the value (not a pipe or a device)",
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_REFERENCE_FILE_BYTES + 1)
    except OSError as exc:
        raise PresetError(f"{where}: cannot read {ref}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_REFERENCE_FILE_BYTES:
        raise PresetError(
            f"{where}: {ref} is larger than {MAX_REFERENCE_FILE_BYTES} bytes",
            hint="point it at a file that holds only the value",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PresetError(f"{where}: {ref} is not UTF-8 text") from None
    if "\0" in text:
        raise PresetError(f"{where}: {ref} contains a NUL character")
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")


def resolve_value(value: str, env: Mapping[str, str], *, where: str) -> str:
    """`value` with its references replaced; `where` names it in errors (`preset 'x': KEY`)."""
    return "".join(_resolve_parts(value, env, where=where)[0])


def _resolve_parts(
    value: str, env: Mapping[str, str], *, where: str
) -> tuple[list[str], list[str]]:
    """The resolved pieces of `value`, and the pieces that came from references."""
    try:
        parts = parse(value)
    except ReferenceSyntaxError as exc:
        raise PresetError(f"{where}: {exc}") from None
    out: list[str] = []
    resolved: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        if part.kind == "env":
            found = env.get(part.target)
            if found is None:
                raise PresetError(
                    f"{where}: {part} is not set in this environment",
                    hint=f"export {part.target}, or change the preset",
                )
        else:
            found = _read_file(part, where)
        out.append(found)
        resolved.append(found)
    return out, resolved


def resolve_variables(
    preset_name: str, variables: Mapping[str, str], env: Mapping[str, str]
) -> dict[str, str]:
    """Every variable of a preset with its references resolved (in the preset's order).

    Remembers the secret ones for masking (module docstring).
    """
    from aiswitch.masking import remember_secrets, should_mask

    values: dict[str, str] = {}
    for name, value in variables.items():
        pieces, from_refs = _resolve_parts(value, env, where=f"preset {preset_name!r}: {name}")
        values[name] = "".join(pieces)
        if should_mask(name, values[name]):
            remember_secrets([values[name], *from_refs])
    return values
