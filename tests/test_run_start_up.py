"""`aiswitch run --agent mock@fast TASK --json` (the console script's fast path) starts its
agent without the modules it never uses: each of these cost milliseconds of every run's
start, and a stray top-level import would bring them back unnoticed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from aiswitch.home import Home

# What a one-agent `--json` run must not import, and why each stays out.
NOT_ON_THE_RUN_PATH = {
    "typer": "the command line is parsed by aiswitch.cli.entry.parse_run",
    "click": "typer's",
    "rich": "`--json` prints no live view, and no warning here",
    "aiswitch.cli.live": "the live view and the status lines are for a terminal",
    "aiswitch.cli.columns": "the live view's",
    "aiswitch.cli.results_view": "the human summary",
    "yaml": "built-in presets parsed before are remembered (yaml_text); no config file here",
    "logging.handlers": "the coordinator log's file is opened for its first record",
    "aiswitch.tokens.quotas": "a home without config/quotas.yaml has no quota to check",
    "aiswitch.presets.ops": "the ledger's host needs only presets/hosts.py",
    "gzip": "only a log that rotates, or one read back, is compressed or decompressed",
}

# Runs the console script's entry in a fresh interpreter and prints what it imported.
PROBE = textwrap.dedent(
    """
    import atexit, json, sys

    def report():
        compiled = sys.modules["tokenize"]._compile.cache_info().currsize
        sys.stderr.write("TOKENIZE:%d" % compiled)
        sys.stderr.write("MODULES:" + json.dumps(sorted(sys.modules)))

    atexit.register(report)
    sys.argv = ["aiswitch", "run", "--agent", "mock@fast", "hi", "--json"]
    from aiswitch.cli.entry import main
    main()
    """
)


def modules_of_a_run(env: dict[str, str]) -> tuple[set[str], int]:
    """What the run imported, and how many of tokenize's patterns it compiled."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "ok"
    report, _, modules = done.stderr.rpartition("MODULES:")
    return set(json.loads(modules)), int(report.rpartition("TOKENIZE:")[2])


def test_a_one_agent_json_run_imports_none_of_what_it_does_not_use(
    env: dict[str, str], home: Home
) -> None:
    modules_of_a_run(env)  # the first run in a home parses the built-in presets
    loaded, _ = modules_of_a_run(env)
    stray = {
        name: why
        for name, why in NOT_ON_THE_RUN_PATH.items()
        if any(m == name or m.startswith(name + ".") for m in loaded)
    }
    assert not stray


def test_a_run_builds_its_models_without_tokenizing_a_builtins_signature(
    env: dict[str, str],
) -> None:
    # A builtin default factory (`list`) makes pydantic read its text signature with
    # tokenize, whose first use compiles a large pattern (~4 ms; aiswitch.factories).
    _, compiled = modules_of_a_run(env)
    assert compiled == 0


BUILTIN_FACTORY = re.compile(r"\bField\([^()]*default_factory=(list|dict|set)\b")


def test_no_model_field_takes_a_builtin_as_its_default_factory() -> None:
    package = Path(__file__).resolve().parents[1] / "aiswitch"
    found = [
        f"{path.relative_to(package)}: {match.group(0)}"
        for path in sorted(package.rglob("*.py"))
        for match in BUILTIN_FACTORY.finditer(path.read_text(encoding="utf-8"))
    ]
    assert not found, "use aiswitch.factories.new_list / new_dict"
