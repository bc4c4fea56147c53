"""Templates and built-in presets ship inside a regular (non-editable) install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Building and installing the project from source; pip is slow on a cold CI machine.
INSTALL_TIMEOUT_S = 300.0


def test_a_non_editable_install_lists_templates_and_built_ins_and_adds_from_a_template(
    tmp_path: Path,
) -> None:
    # Build from a private copy: setuptools builds in the source tree (`build/`), which other
    # builds running at the same time would share.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__"),
    )
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
         str(source)],
        check=True, timeout=INSTALL_TIMEOUT_S, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    assert (target / "aiswitch_presets" / "templates" / "claude-moonshot.yaml").is_file()
    assert not (target / "aiswitch_presets" / "templates" / "__init__.py").exists()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": str(target),
        "AISWITCH_HOME": str(tmp_path / "home"),
        "PYTHONNOUSERSITE": "1",
    }
    # -I would drop PYTHONPATH; -s and a cwd outside the repository keep the source tree out.
    program = [sys.executable, "-s", "-c", "from aiswitch.cli.entry import main; main()"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*program, *args], env=env, capture_output=True, text=True, cwd=tmp_path,
            timeout=INSTALL_TIMEOUT_S, check=False,
        )  # fmt: skip

    where = subprocess.run(
        [sys.executable, "-s", "-c", "import aiswitch_presets; print(aiswitch_presets.__file__)"],
        env=env, capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(target))
    templates = cli("preset", "templates", "--json")
    assert templates.returncode == 0, templates.stderr
    names = {doc["name"] for doc in json.loads(templates.stdout)}
    assert {"claude-anthropic", "codex-openai", "gemini-google", "codex-local"} <= names
    presets = cli("preset", "list", "--json")
    assert {"slow", "fast", "flaky", "crashy"} <= {
        row["name"] for row in json.loads(presets.stdout)
    }
    added = cli("preset", "add", "kimi", "--from-template", "claude-moonshot")
    assert added.returncode == 0, added.stderr
    shown = json.loads(cli("preset", "show", "kimi", "--json").stdout)
    assert shown["variables"]["ANTHROPIC_BASE_URL"] == "https://api.moonshot.ai/anthropic"
