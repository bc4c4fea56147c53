"""YAML documents parsed once are remembered by content (aiswitch.yaml_text): a later
process takes the same value without PyYAML, and nothing else about parsing changes."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiswitch import yaml_text
from aiswitch.agents import load_yaml
from aiswitch.errors import ConfigError

DOCUMENT = "name: fast\nagent: mock\ntags: [mock]\nvariables:\n  MOCK_LATENCY: '0'\nn: 3\nx: 1.5\n"


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "tmp"
    where.mkdir()
    yaml_text.remember_in(where)
    yield where
    yaml_text.remember_in(None)


def parse_in_new_process(folder: Path, text: str) -> tuple[object, bool]:
    """The value a fresh interpreter parses from `text`, and whether it imported PyYAML."""
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from aiswitch import yaml_text\n"
        "yaml_text.remember_in(Path(sys.argv[1]))\n"
        "value = yaml_text.parse(sys.stdin.read(), remember=True)\n"
        "print(json.dumps([value, 'yaml' in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    value, imported = json.loads(out.stdout)
    return value, imported


def test_a_document_parsed_once_is_taken_from_the_cache_without_pyyaml(folder: Path) -> None:
    first = yaml_text.parse(DOCUMENT, remember=True)
    assert (folder / yaml_text.CACHE_FILE).is_file()
    value, imported = parse_in_new_process(folder, DOCUMENT)
    assert value == first
    assert not imported


def test_a_changed_document_is_parsed_again(folder: Path) -> None:
    yaml_text.parse(DOCUMENT, remember=True)
    changed = DOCUMENT.replace("'0'", "'1'")
    value, imported = parse_in_new_process(folder, changed)
    assert imported
    assert value["variables"] == {"MOCK_LATENCY": "1"}  # type: ignore[index]


def test_each_parse_gives_a_value_of_its_own(folder: Path) -> None:
    yaml_text.parse(DOCUMENT, remember=True)
    yaml_text.remember_in(None)
    yaml_text.remember_in(folder)  # the next parses read the file
    one = yaml_text.parse(DOCUMENT, remember=True)
    one["tags"].append("changed")
    assert yaml_text.parse(DOCUMENT, remember=True)["tags"] == ["mock"]


def test_a_value_json_cannot_hold_exactly_is_parsed_every_time(folder: Path) -> None:
    text = "day: 2026-12-05\n1: one\n"
    assert yaml_text.parse(text, remember=True) == {"day": datetime.date(2026, 12, 5), 1: "one"}
    assert yaml_text.parse(text, remember=True) == {"day": datetime.date(2026, 12, 5), 1: "one"}
    assert not (folder / yaml_text.CACHE_FILE).exists()


def test_a_damaged_cache_is_ignored_and_rewritten(folder: Path) -> None:
    (folder / yaml_text.CACHE_FILE).write_text("{not json")
    yaml_text.remember_in(None)
    yaml_text.remember_in(folder)
    assert yaml_text.parse(DOCUMENT, remember=True)["n"] == 3
    kept = json.loads((folder / yaml_text.CACHE_FILE).read_text())
    assert len(kept) == 1


def test_the_cache_keeps_only_the_latest_documents(folder: Path) -> None:
    for n in range(yaml_text.CACHE_ENTRIES + 5):
        assert yaml_text.parse(f"n: {n}\n", remember=True) == {"n": n}
    kept = json.loads((folder / yaml_text.CACHE_FILE).read_text())
    assert len(kept) == yaml_text.CACHE_ENTRIES
    assert json.loads(list(kept.values())[-1]) == {"n": yaml_text.CACHE_ENTRIES + 4}


def test_invalid_yaml_is_still_a_config_error_naming_the_line(folder: Path, tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  mock: [unclosed\n")
    with pytest.raises(ConfigError, match=r"agents.yaml: invalid YAML at line 3"):
        load_yaml(path)
    with pytest.raises(ConfigError, match=r"agents.yaml: invalid YAML at line 3"):
        load_yaml(path)


def test_a_users_file_is_never_remembered(folder: Path, tmp_path: Path) -> None:
    """A preset may hold a secret literal: no other file may copy it."""
    secret = "sk-ant-api03-" + "x" * 40
    text = f"name: mine\nvariables:\n  ANTHROPIC_API_KEY: {secret}\n"
    assert yaml_text.parse(text)["variables"]["ANTHROPIC_API_KEY"] == secret
    assert not (folder / yaml_text.CACHE_FILE).exists()
    # Through the config loader too, with the CLI's cache folder set.
    from aiswitch.agents import load_yaml

    path = tmp_path / "presets.yaml"
    path.write_text(text)
    load_yaml(path)
    assert not (folder / yaml_text.CACHE_FILE).exists()


def test_the_built_in_presets_are_remembered(folder: Path) -> None:
    from aiswitch.presets.builtin import builtin_presets

    builtin_presets.cache_clear()
    try:
        assert "mock" in str(builtin_presets())
    finally:
        builtin_presets.cache_clear()
    kept = json.loads((folder / yaml_text.CACHE_FILE).read_text())
    assert any('"mock"' in value for value in kept.values())
