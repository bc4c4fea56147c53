"""References in preset values: `${env:NAME}`, `${file:PATH}`, `$${`, and everything literal."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiswitch.errors import PresetError
from aiswitch.presets.refs import (
    MAX_REFERENCE_FILE_BYTES,
    ReferenceSyntaxError,
    check_value,
    is_pure_reference,
    resolve_value,
    resolve_variables,
)


def resolve(value: str, **env: str) -> str:
    return resolve_value(value, env, where="preset 'p': X")


def test_an_env_reference_takes_the_callers_variable() -> None:
    assert resolve("${env:KEY}", KEY="sk-123") == "sk-123"
    assert resolve("Bearer ${env:KEY}!", KEY="abc") == "Bearer abc!"
    assert resolve("${env:A}${env:B}", A="1", B="2") == "12"


def test_a_file_reference_reads_the_file_without_its_trailing_newline(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("secret-value\n")
    assert resolve(f"${{file:{key}}}") == "secret-value"
    key.write_text("two\nlines\n\n")
    assert resolve(f"${{file:{key}}}") == "two\nlines\n"
    key.write_bytes(b"crlf\r\n")
    assert resolve(f"${{file:{key}}}") == "crlf"


def test_a_file_reference_expands_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "k").write_text("v")
    assert resolve("${file:~/k}") == "v"


@pytest.mark.parametrize(
    "value",
    ["$HOME", "${HOME}", "$(touch x)", "`id`", "$$", "${envx:A}", "${ env:A}", "$", "{env:A}"],
)
def test_every_other_dollar_text_is_literal(value: str) -> None:
    assert resolve(value) == value


def test_a_doubled_dollar_brace_is_a_literal_dollar_brace() -> None:
    assert resolve("$${env:KEY}", KEY="no") == "${env:KEY}"
    assert resolve("a$${b}c") == "a${b}c"
    assert resolve("$${") == "${"


def test_a_missing_variable_names_it_and_not_any_value() -> None:
    with pytest.raises(PresetError) as caught:
        resolve("${env:MISSING_KEY}", OTHER="sk-secret")
    message = caught.value.one_line()
    assert "preset 'p': X" in message and "${env:MISSING_KEY}" in message
    assert "sk-secret" not in message


def test_a_missing_or_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PresetError, match="does not exist"):
        resolve(f"${{file:{tmp_path / 'nope'}}}")
    with pytest.raises(PresetError, match="not a regular file"):
        resolve(f"${{file:{tmp_path}}}")


def test_a_huge_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_REFERENCE_FILE_BYTES + 1))
    with pytest.raises(PresetError, match="larger than"):
        resolve(f"${{file:{big}}}")


@pytest.mark.parametrize(
    "value", ["${env:", "${env:A", "${env:1A}", "${env:A-B}", "${file:}", "${file:rel/path}"]
)
def test_a_half_written_reference_is_refused_when_saved(value: str) -> None:
    with pytest.raises(ReferenceSyntaxError):
        check_value(value)


def test_a_nul_character_is_refused() -> None:
    with pytest.raises(ReferenceSyntaxError, match="NUL"):
        check_value("a\0b")


def test_pure_references_are_recognised() -> None:
    assert is_pure_reference("${env:A}")
    assert is_pure_reference("${file:/k}")
    assert not is_pure_reference("x${env:A}")
    assert not is_pure_reference("$${env:A}")
    assert not is_pure_reference("plain")


def test_variables_resolve_in_order_and_fail_as_a_whole() -> None:
    variables = {"B": "${env:B}", "A": "lit"}
    assert list(resolve_variables("p", variables, {"B": "b"})) == ["B", "A"]
    with pytest.raises(PresetError, match="preset 'p': B"):
        resolve_variables("p", variables, {})
