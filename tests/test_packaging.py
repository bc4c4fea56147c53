"""What gets installed: every package folder, the adapters and presets under their names."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT / "aiswitch").parts)
        for p in (ROOT / "aiswitch").rglob("__init__.py")
    }
    expected = {"aiswitch" + (f".{name}" if name else "") for name in found}
    assert expected | {"aiswitch_adapters", "aiswitch_presets"} == listed


def test_a_regular_wheel_ships_the_adapters_and_presets_under_collision_free_names(
    tmp_path: Path,
) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("aiswitch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "aiswitch_adapters/mock.py" in names
    assert "aiswitch_presets/slow.yaml" in names
    assert not any(n.startswith(("adapters/", "presets/")) for n in names)
