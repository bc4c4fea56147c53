"""The executor seam: which backend runs a run (`--backend`, `--address`, the `executor:`
section of config/coordination.yaml), and that the run knows the executor only through
its small interface."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.cli import assert_one_error_line, run_cli

import aiswitch.coordinator as coordinator_package
from aiswitch.coordinator.executors import Backend, choose_backend
from aiswitch.errors import ConfigError, UsageError
from aiswitch.home import Home


def write_config(home: Home, section: object) -> None:
    home.config.mkdir(parents=True, exist_ok=True)
    (home.config / "coordination.yaml").write_text(yaml.safe_dump({"executor": section}))


def test_without_flags_or_config_the_backend_is_local(home: Home) -> None:
    assert choose_backend(home.config, None, None) == Backend(backend="local", address=None)


def test_the_config_names_the_backend_and_the_flags_override_it(home: Home) -> None:
    write_config(home, {"backend": "ray", "address": "ray://127.0.0.1:10001"})
    assert choose_backend(home.config, None, None) == Backend(
        backend="ray", address="ray://127.0.0.1:10001"
    )
    assert choose_backend(home.config, "local", None) == Backend(backend="local")
    assert choose_backend(home.config, None, "auto") == Backend(backend="ray", address="auto")


def test_an_address_without_the_ray_backend_is_refused(home: Home) -> None:
    with pytest.raises(UsageError, match="--address names a Ray cluster"):
        choose_backend(home.config, "local", "auto")
    with pytest.raises(UsageError, match="unknown --backend 'spark'"):
        choose_backend(home.config, "spark", None)


def test_a_wrong_executor_section_is_named_with_its_field(home: Home) -> None:
    write_config(home, {"backend": "ray", "adress": "auto"})
    with pytest.raises(ConfigError, match=r"executor\.adress"):
        choose_backend(home.config, None, None)


def test_an_unknown_backend_on_the_command_line_is_one_clear_line(
    env: dict[str, str],
) -> None:
    done = run_cli("run", "--agent", "mock", "x", "--backend", "spark", env=env)
    assert_one_error_line(done, "unknown --backend 'spark'")
    done = run_cli("run", "--agent", "mock", "x", "--address", "auto", env=env)
    assert_one_error_line(done, "--address names a Ray cluster")


def test_a_local_run_records_no_backend_and_runs_as_before(env: dict[str, str]) -> None:
    done = run_cli("run", "--agent", "mock", "x", "--backend", "local", "--json", env=env)
    assert done.code == 0, done.stderr
    doc = done.json()
    assert doc["status"] == "ok"
    assert doc["settings"]["backend"] is None


def test_only_the_seam_names_an_executor_class() -> None:
    """Nothing else in the coordinator knows which executor runs (the run holds an
    `Executor`, made by `new_executor`)."""
    folder = Path(coordinator_package.__file__).parent
    allowed = {"executors.py", "executor.py", "ray_executor.py", "ray_node.py", "coordinator.py"}
    for path in folder.glob("*.py"):
        if path.name in allowed:
            continue
        tree = ast.parse(path.read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {
            a.asname or a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom)
            for a in n.names
        }
        assert not names & {"LocalExecutor", "RayExecutor"}, path.name


def test_a_local_run_never_imports_ray() -> None:
    """Ray is imported by the ray executor only: not by a run, the CLI or --version."""
    code = (
        "import sys\n"
        "import aiswitch.cli.run_cmd, aiswitch.coordinator.coordinator\n"
        "import aiswitch.coordinator.executors, aiswitch.coordinator.run\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_child_environment_on_a_node_keeps_the_drivers_values_and_the_nodes_basics(
    tmp_path: Path,
) -> None:
    from aiswitch.coordinator.ray_node import node_env

    driver = {"PATH": "/driver/bin", "HOME": "/home/driver", "OPENAI_API_KEY": "k", "LC_ALL": "x"}
    node = {"PATH": "/node/bin", "HOME": "/home/node", "SECRET_OF_NODE": "s"}
    env = node_env(driver, node, Home(tmp_path / "h"))
    assert env == {
        "PATH": "/node/bin",
        "HOME": "/home/node",
        "OPENAI_API_KEY": "k",
        "AISWITCH_HOME": str(tmp_path / "h"),
    }
