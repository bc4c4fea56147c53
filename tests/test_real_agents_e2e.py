"""`aiswitch run` driving the real claude, codex and gemini CLIs, offline, end to end.

The installed `aiswitch` console script runs the built-in agents; their adapters run
the pinned CLIs (scripts/setup/agent-clis.sh) against `aiswitch.testing.fake_provider`
on 127.0.0.1. The tests assert what a user sees and what aiswitch records: outputs as
scripted, ledger tokens equal to what the fake sent (normalised: cached tokens outside
input), provider errors as failed results with the provider's (or the CLI's) message,
timeouts and Ctrl-C that leave no CLI process behind, a sequential hand-off, and no
traffic to any host but the fake: every request in the fake's log is an expected path,
and HTTP(S)_PROXY points at a trap listener that must see no connection at all.

The fake's variables reach the agents through a real preset (`aiswitch preset add fake …`,
run as `claude@fake,codex@fake,gemini@fake`), so the adapters take the API-key preset path
(their own homes under `$AISWITCH_HOME/homes/`); the sequential test uses
`config/agents.yaml` `env:` and no preset, so the CLIs use their own homes.

Everything lives in a private folder under the test cache, not /tmp: gemini ignores a
system settings file below a folder others may write (/tmp is 1777).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from aiswitch_adapters.claude import ClaudeAdapter
from aiswitch_adapters.codex import CodexAdapter
from aiswitch_adapters.gemini import GeminiAdapter
from support.cli import Completed, aiswitch_bin, clean_env, run_cli
from support.clis import cache_root, cli_bin_dir, cli_path, node_bin_dir
from test_adapter_common import make_ctx

from aiswitch.protocol.models import InitializeParams
from aiswitch.testing.fake_provider import FakeProvider
from aiswitch.testing.fake_script import ApiKind, ErrorReply, FakeUsage, Script, TextReply

pytestmark = [pytest.mark.realcli, pytest.mark.timeout(90)]

# One parallel run of the three CLIs takes ~4 s; this only ends a hung test.
RUN_TIMEOUT_S = 60.0
# The task timeout of the timeout test: long enough for three node CLIs to start and
# reach the fake on a loaded two-core machine (gemini, the slowest, took 18.5 s at load 19
# here: 20 s was not enough margin). The test lasts about this long whatever the load.
HANG_TASK_TIMEOUT_S = 45.0
# How long a killed process group may take to disappear from the process table.
REAP_WAIT_S = 5.0
GEMINI_MODEL = "fake-gemini"
FAKE_PRESET = "fake"
ALL_AT_FAKE = f"claude@{FAKE_PRESET},codex@{FAKE_PRESET},gemini@{FAKE_PRESET}"
# Connections the trap proxy remembers (gemini retries a failing proxy in a tight loop).
TRAP_KEEP = 20

TEXTS = {
    ApiKind.ANTHROPIC: "Claude's scripted answer: three tests added.",
    ApiKind.OPENAI: "Codex's scripted answer: the tests pass.",
    ApiKind.GEMINI: "Gemini's scripted answer: reviewed, looks fine.",
}
# Distinct numbers per provider, so that a swapped or dropped field shows.
USAGES = {
    ApiKind.ANTHROPIC: FakeUsage(
        input_tokens=1200, output_tokens=340, cache_read_tokens=560, cache_write_tokens=78
    ),
    ApiKind.OPENAI: FakeUsage(
        input_tokens=900, output_tokens=210, cache_read_tokens=300, reasoning_tokens=40
    ),
    ApiKind.GEMINI: FakeUsage(
        input_tokens=700, output_tokens=150, cache_read_tokens=100, reasoning_tokens=30
    ),
}
AGENT_API = {"claude": ApiKind.ANTHROPIC, "codex": ApiKind.OPENAI, "gemini": ApiKind.GEMINI}
EXPECTED_PATHS = {
    ("HEAD", "/"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/responses"),
    ("POST", f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent"),
}


def normalised(api: ApiKind, usage: FakeUsage) -> dict[str, int]:
    """What the ledger must hold for what the fake sent on `api`'s wire.

    Anthropic reports cache writes apart and no reasoning count; OpenAI and Gemini fold
    cache writes into input (so they come back as input) and report reasoning.
    """
    if api is ApiKind.ANTHROPIC:
        return {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "reasoning_tokens": 0,
        }
    return {
        "input_tokens": usage.input_tokens + usage.cache_write_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": 0,
        "reasoning_tokens": usage.reasoning_tokens,
    }


# -- a proxy that must never be used ---------------------------------------------------


@dataclass
class TrapProxy:
    """A listener set as HTTP(S)_PROXY: any connection is a request that tried to leave."""

    sock: socket.socket = field(default_factory=socket.socket)
    seen: list[str] = field(default_factory=list)

    def start(self) -> str:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(1.0)
                try:
                    first = conn.recv(256).split(b"\r\n", 1)[0]
                except OSError:
                    first = b""
                # A client that retries in a loop would fill memory; the first few tell.
                if len(self.seen) < TRAP_KEEP:
                    self.seen.append(first.decode(errors="replace") or "<connection>")

    def close(self) -> None:
        self.sock.close()


# -- the sandbox ------------------------------------------------------------------------


@dataclass
class Sandbox:
    root: Path
    fake: FakeProvider
    proxy_url: str

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def ais(self) -> Path:
        return self.root / "ais"

    @property
    def work(self) -> Path:
        return self.root / "work"

    def env(self) -> dict[str, str]:
        path = os.pathsep.join([str(cli_bin_dir()), str(node_bin_dir()), "/usr/bin", "/bin"])
        env = clean_env(self.ais, PATH=path, HOME=str(self.home), TMPDIR=str(self.root / "tmp"))
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            env[name] = env[name.lower()] = self.proxy_url
        # The fake is on 127.0.0.1: reached directly; anything else would hit the trap.
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return env

    def variables(self, agent: str) -> dict[str, str]:
        """What points `agent`'s CLI at the fake."""
        return {
            "claude": {
                "ANTHROPIC_BASE_URL": self.fake.url,
                "ANTHROPIC_API_KEY": "sk-ant-fake-e2e-key-0000000000",
            },
            "codex": {
                "OPENAI_BASE_URL": f"{self.fake.url}/v1",
                "OPENAI_API_KEY": "sk-fake-e2e-openai-key-000000",
            },
            "gemini": {
                "GOOGLE_GEMINI_BASE_URL": self.fake.url,
                "GEMINI_API_KEY": "fake-gemini-e2e-key",
                "GEMINI_MODEL": GEMINI_MODEL,
            },
        }[agent]

    def add_preset(self) -> None:
        """The API-key preset `fake`, with every agent's variables, made by the CLI."""
        pairs = [f"{k}={v}" for agent in AGENT_API for k, v in self.variables(agent).items()]
        out = run_cli("preset", "add", FAKE_PRESET, *pairs, env=self.env(), cwd=self.work)
        assert out.code == 0, out.stderr

    def configure_agents(self) -> None:
        """No preset: agents.yaml `env:` points each built-in agent at the fake."""
        agents = {agent: {"env": self.variables(agent)} for agent in AGENT_API}
        config = self.ais / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "agents.yaml").write_text(yaml.safe_dump({"agents": agents}), encoding="utf-8")

    def script_answers(self) -> None:
        """Each API answers with its own text and usage (`TEXTS`, `USAGES`)."""
        for api, text in TEXTS.items():
            self.fake.script.add(TextReply(text, usage=USAGES[api]), api=api)

    def run(self, *args: str) -> Completed:
        return run_cli("run", *args, env=self.env(), cwd=self.work, timeout=RUN_TIMEOUT_S)

    def ledger(self) -> list[dict[str, Any]]:
        path = self.ais / "state" / "tokens.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def leftover_processes(self) -> list[str]:
        """Processes started for this sandbox (they carry its AISWITCH_HOME) still alive:
        those found are waited on (up to REAP_WAIT_S), then the table is read once more."""
        psutil.wait_procs(self._sandbox_processes(), timeout=REAP_WAIT_S)
        return [
            f"{proc.pid}: {' '.join(proc.info['cmdline'] or [])}"
            for proc in self._sandbox_processes()
        ]

    def _sandbox_processes(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["pid", "cmdline", "status"]):
            try:
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                if proc.environ().get("AISWITCH_HOME") == str(self.ais):
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found


@pytest.fixture(scope="module", autouse=True)
def pinned_clis() -> None:
    """Fail (never skip) when the pinned CLIs are not installed."""
    for name in ("claude", "codex", "gemini"):
        cli_path(name)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    base = cache_root() / "e2e"
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    for folder in ("home", "work", "tmp"):
        (root / folder).mkdir()
    trap = TrapProxy()
    proxy_url = trap.start()
    try:
        with FakeProvider(Script()) as fake:
            box = Sandbox(root, fake, proxy_url)
            yield box
            assert trap.seen == [], f"requests tried to leave through the proxy: {trap.seen}"
            paths = {(r.method, r.path) for r in fake.requests}
            assert paths <= EXPECTED_PATHS, sorted(paths - EXPECTED_PATHS)
            assert not fake.unexpected_requests()
            assert box.leftover_processes() == []
    finally:
        trap.close()
        shutil.rmtree(root, ignore_errors=True)


def results_by_agent(out: Completed) -> dict[str, dict[str, Any]]:
    try:
        document = out.json()
    except ValueError:
        raise AssertionError(
            f"exit {out.code}\nstdout: {out.stdout}\nstderr: {out.stderr}"
        ) from None
    return {r["agent"]: r for r in document["results"]}


def ledger_usage(record: dict[str, Any]) -> dict[str, int]:
    # The ledger leaves out fields at their default (0).
    return {name: record.get(name, 0) for name in normalised(ApiKind.OPENAI, FakeUsage(0, 0))}


# -- the tests --------------------------------------------------------------------------


def test_three_real_clis_in_parallel_answer_as_scripted_and_the_ledger_holds_the_fakes_tokens(
    sandbox: Sandbox,
) -> None:
    sandbox.add_preset()
    sandbox.script_answers()

    out = sandbox.run("--parallel", ALL_AT_FAKE, "Add tests for the parser", "--json")

    results = results_by_agent(out)
    assert out.code == 0, out.stderr
    for agent, api in AGENT_API.items():
        result = results[agent]
        assert result["status"] == "ok", result
        assert result["output"] == TEXTS[api]
        assert result["session_id"]
        assert result["preset"] == FAKE_PRESET
    assert results["claude"]["cost_usd"] > 0  # claude's own figure

    records = {r["agent"]: r for r in sandbox.ledger()}
    assert sorted(records) == ["claude", "codex", "gemini"]
    for agent, api in AGENT_API.items():
        assert ledger_usage(records[agent]) == normalised(api, USAGES[api]), agent
        assert records[agent]["provider"] == "127.0.0.1"
        assert records[agent]["preset"] == FAKE_PRESET
        assert records[agent]["session_id"] == results[agent]["session_id"]
    assert records["claude"]["model"] == "claude-opus-4-8"
    assert records["gemini"]["model"] == GEMINI_MODEL
    assert records["codex"]["model"]  # read from codex's session file

    prompts = {r.api: r.prompt for r in sandbox.fake.requests if r.api is not ApiKind.PROBE}
    assert prompts == {api: "Add tests for the parser" for api in AGENT_API.values()}
    # An API-key preset: each CLI kept its files in its own private home.
    for cli in ("claude", "codex", "gemini"):
        home = sandbox.ais / "homes" / cli / FAKE_PRESET
        assert stat.S_IMODE(home.stat().st_mode) == 0o700, cli
    assert not (sandbox.home / ".claude").exists()
    settings = json.loads(
        (sandbox.ais / "homes" / "gemini" / FAKE_PRESET / ".gemini" / "settings.json").read_text()
    )
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"


def test_a_provider_http_error_fails_each_agent_with_the_providers_message(
    sandbox: Sandbox,
) -> None:
    sandbox.add_preset()
    script = sandbox.fake.script
    script.add(ErrorReply(429, "fake quota gone"), api=ApiKind.ANTHROPIC)
    # codex replaces a 429's message with its own; a 401 keeps the provider's.
    script.add(ErrorReply(401, "fake key rejected"), api=ApiKind.OPENAI)
    script.add(ErrorReply(429, "fake quota gone"), api=ApiKind.GEMINI)

    out = sandbox.run("--parallel", ALL_AT_FAKE, "Add tests", "--json")

    results = results_by_agent(out)
    assert out.code != 0
    assert "fake quota gone" in results["claude"]["error"]
    assert "429" in results["claude"]["error"]
    assert "401 Unauthorized: fake key rejected" in results["codex"]["error"]
    assert "fake quota gone" in results["gemini"]["error"]
    for agent in AGENT_API:
        assert results[agent]["status"] == "failed"
        assert "\n" not in results[agent]["error"]
        assert "fake-e2e" not in results[agent]["error"]  # no key in a message
    # Retries are off: one request per CLI, so the error came at once.
    for api in AGENT_API.values():
        assert len(sandbox.fake.requests_for(api)) == 1, api


@pytest.mark.timeout(HANG_TASK_TIMEOUT_S + 3 * RUN_TIMEOUT_S)
def test_a_task_timeout_kills_every_cli_whose_provider_never_answers(sandbox: Sandbox) -> None:
    sandbox.add_preset()
    # The task timeout must outlast a CLI's start on a loaded machine (it counts from the
    # assignment, and the adapter starts the CLI inside the task): the clock this test
    # checks starts when the last CLI's request reached the fake.
    timeout = HANG_TASK_TIMEOUT_S
    args = ["run", "--parallel", ALL_AT_FAKE, "[[hang]] Add tests", "--timeout", str(timeout)]
    proc = subprocess.Popen(
        [aiswitch_bin(), *args, "--json"],
        env=sandbox.env(),
        cwd=sandbox.work,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for api in AGENT_API.values():
            sandbox.fake.wait_for_requests(1, timeout=timeout, api=api)
        reached = time.monotonic()
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - reached < timeout + 15
    results = {r["agent"]: r for r in json.loads(stdout)["results"]}
    for agent in AGENT_API:
        assert results[agent]["status"] == "timeout", (results[agent], stderr)
    # The sandbox fixture asserts that no process of this run is left.


def test_ctrl_c_on_a_run_kills_every_cli_it_started(sandbox: Sandbox) -> None:
    sandbox.add_preset()
    proc = subprocess.Popen(
        [aiswitch_bin(), "run", "--parallel", ALL_AT_FAKE, "[[hang]] x", "--json"],
        env=sandbox.env(),
        cwd=sandbox.work,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for api in AGENT_API.values():
            sandbox.fake.wait_for_requests(1, timeout=RUN_TIMEOUT_S, api=api)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert sandbox.leftover_processes() == []


def test_sequential_claude_then_codex_hands_claudes_output_to_codex(sandbox: Sandbox) -> None:
    # No preset this time: each CLI uses its own home (here the sandbox's $HOME).
    sandbox.configure_agents()
    sandbox.script_answers()

    out = sandbox.run("--sequential", "claude,codex", "Write the parser tests", "--json")

    results = results_by_agent(out)
    assert out.code == 0, out.stderr
    assert results["claude"]["output"] == TEXTS[ApiKind.ANTHROPIC]
    assert results["codex"]["output"] == TEXTS[ApiKind.OPENAI]
    (codex_call,) = sandbox.fake.requests_for(ApiKind.OPENAI)
    assert "Write the parser tests" in codex_call.prompt
    assert TEXTS[ApiKind.ANTHROPIC] in codex_call.prompt
    assert (sandbox.home / ".claude").is_dir()
    assert not (sandbox.ais / "homes" / "claude").exists()


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini"])
async def test_each_adapter_continues_its_cli_session_when_given_the_session_id(
    sandbox: Sandbox, agent: str
) -> None:
    # `aiswitch run` has no resume flag yet: drive the adapter in-process, as its server does.
    adapters = {"claude": ClaudeAdapter, "codex": CodexAdapter, "gemini": GeminiAdapter}
    adapter = adapters[agent]()
    await adapter.setup(
        InitializeParams(
            agent_id=f"{agent}#1", parent_pid=os.getpid(), config={"cli_path": str(cli_path(agent))}
        )
    )
    # What the parent gives a child of `agent@fake`.
    variables = sandbox.variables(agent)
    env = {
        **sandbox.env(),
        **variables,
        "AISWITCH_PRESET": FAKE_PRESET,
        "AISWITCH_PRESET_VARS": ",".join(sorted(variables)),
        "AISWITCH_PRESET_BILLING": "api",
    }
    api = AGENT_API[agent]

    first = await adapter.run_task(
        make_ctx(env=env, prompt="Remember heliotrope", cwd=str(sandbox.work))
    )
    second = await adapter.run_task(
        make_ctx(env=env, prompt="Which word?", cwd=str(sandbox.work), session_id=first.session_id)
    )

    assert first.session_id and second.session_id == first.session_id
    last = sandbox.fake.requests_for(api)[-1]
    assert last.prompt == "Which word?"
    assert "Remember heliotrope" in json.dumps(last.body)
