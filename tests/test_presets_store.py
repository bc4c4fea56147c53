"""The preset store: layout, modes, atomic locked writes, built-ins, and bad files."""

from __future__ import annotations

import concurrent.futures
import stat
from pathlib import Path

import pytest
import yaml
from support.cli import run_cli

from aiswitch.errors import ConfigError, PresetError
from aiswitch.home import Home
from aiswitch.presets.model import Preset
from aiswitch.presets.store import PresetStore, StoreData, ensure_free, writable

# Enough processes to make lost updates likely without a lock, few enough for a CI box.
CONCURRENT_WRITERS = 20


def add(store: PresetStore, preset: Preset) -> None:
    def change(data: StoreData) -> None:
        ensure_free(data, preset.name)
        data.presets[preset.name] = preset

    store.modify(change)


def test_a_user_preset_is_stored_under_config_with_private_modes(home: Home) -> None:
    store = PresetStore(home)
    add(store, Preset(name="kimi", variables={"ANTHROPIC_AUTH_TOKEN": "${env:MOONSHOT_API_KEY}"}))
    assert store.path == home.config / "presets.yaml"
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.config.stat().st_mode) == 0o700
    raw = yaml.safe_load(store.path.read_text())
    assert raw["version"] == 1
    assert raw["presets"]["kimi"] == {
        "variables": {"ANTHROPIC_AUTH_TOKEN": "${env:MOONSHOT_API_KEY}"}
    }
    assert store.get("kimi").variables == {"ANTHROPIC_AUTH_TOKEN": "${env:MOONSHOT_API_KEY}"}


def test_values_with_any_characters_round_trip_through_the_file(home: Home) -> None:
    store = PresetStore(home)
    values = {
        "A": "$(touch x) `y` 'q' \"d\" \\ %s",
        "B": "line1\nline2\n",
        "C": "héllo 🚀",
        "D": "",
        "E": "yes",
        "F": "0123",
        "G": "- dash: colon # hash",
    }
    add(store, Preset(name="nasty", variables=values))
    assert PresetStore(home).get("nasty").variables == values


def test_built_in_presets_are_visible_and_read_only(home: Home) -> None:
    store = PresetStore(home)
    assert {"slow", "fast", "flaky", "crashy"} <= set(store.all())
    assert store.get("fast").agent == "mock"
    with pytest.raises(PresetError, match="built in and read-only"):
        store.modify(lambda data: writable(data, "fast"))
    with pytest.raises(PresetError, match="built-in"):
        add(store, Preset(name="fast"))
    assert not store.path.exists()


def test_invalid_yaml_is_an_error_naming_the_file_and_line_and_the_file_is_untouched(
    home: Home,
) -> None:
    home.ensure()
    path = home.config / "presets.yaml"
    text = "version: 1\npresets:\n  a:\n    variables: {X: 1\n  b: [\n"
    path.write_text(text)
    store = PresetStore(home)
    with pytest.raises(ConfigError) as caught:
        store.load()
    assert str(path) in caught.value.message
    assert "line " in caught.value.message
    with pytest.raises(ConfigError):
        add(store, Preset(name="c"))
    assert path.read_text() == text
    assert sorted(p.name for p in home.config.iterdir()) == ["presets.yaml"]


def test_an_invalid_entry_names_the_file_and_the_preset(home: Home) -> None:
    home.ensure()
    path = home.config / "presets.yaml"
    path.write_text("presets:\n  good: {}\n  bad:\n    variables: {'1X': v}\n")
    with pytest.raises(ConfigError, match=r"presets\.yaml: preset 'bad'.*invalid variable name"):
        PresetStore(home).load()


def test_a_hand_written_name_with_a_path_separator_is_refused(home: Home) -> None:
    home.ensure()
    (home.config / "presets.yaml").write_text("presets:\n  ../evil: {}\n")
    with pytest.raises(ConfigError, match="invalid preset name"):
        PresetStore(home).load()


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "-opt", "a b", "x" * 65, "é"])
def test_names_that_could_be_paths_or_options_are_refused(home: Home, name: str) -> None:
    with pytest.raises(ValueError, match="invalid preset name"):
        Preset(name=name)


def test_a_change_that_fails_writes_nothing(home: Home) -> None:
    store = PresetStore(home)
    add(store, Preset(name="a", variables={"X": "1"}))
    before = store.path.read_bytes()

    def change(data: StoreData) -> None:
        data.presets["b"] = Preset(name="b")
        raise PresetError("no")

    with pytest.raises(PresetError):
        store.modify(change)
    assert store.path.read_bytes() == before


def test_twenty_processes_adding_presets_at_once_lose_none(env: dict[str, str], home: Home) -> None:
    def one(index: int) -> int:
        return run_cli("preset", "add", f"p{index}", f"VALUE_{index}={index}", env=env).code

    with concurrent.futures.ThreadPoolExecutor(CONCURRENT_WRITERS) as pool:
        codes = list(pool.map(one, range(CONCURRENT_WRITERS)))
    assert codes == [0] * CONCURRENT_WRITERS
    presets = PresetStore(home).load().presets
    assert sorted(presets) == sorted(f"p{i}" for i in range(CONCURRENT_WRITERS))
    for index in range(CONCURRENT_WRITERS):
        assert presets[f"p{index}"].variables == {f"VALUE_{index}": str(index)}
    leftovers = [p.name for p in home.config.iterdir() if p.name != "presets.yaml"]
    assert leftovers == []


def test_a_reserved_variable_name_cannot_be_stored(home: Home) -> None:
    for name in ("PATH", "HOME", "AISWITCH_PRESET", "IFS"):
        with pytest.raises(ValueError, match="reserved"):
            Preset(name="x", variables={name: "v"})
        with pytest.raises(ValueError, match="reserved"):
            Preset(name="x", unset=[name])


def test_the_store_file_of_a_newer_version_is_refused(home: Home, tmp_path: Path) -> None:
    home.ensure()
    (home.config / "presets.yaml").write_text("version: 99\npresets: {}\n")
    with pytest.raises(ConfigError, match="newer"):
        PresetStore(home).load()
