"""An agent that speaks the protocol by hand, for tests of what a misbehaving one sends.

`hand_agent(home, tmp_path, name, on_assign)` writes a small Python child and registers it
as agent `name` in the home's agents.yaml. The child answers `agent.initialize`,
`agent.status` and `agent.shutdown` as a well-behaved agent would; for each `task.assign`
it runs `on_assign`, Python code that may `send(text)` any line (raw text, so it can send
what is not JSON, such as `1e309`) and must set `result` to the JSON text of the reply's
result. `tid` is the task id as JSON text, `msg` the request, `os` the os module (the
agent's `env` from agents.yaml is in `os.environ`).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import yaml

from aiswitch.home import Home

_TEMPLATE = """\
import json, os, sys

def send(text):
    sys.stdout.write(text + "\\n")
    sys.stdout.flush()

for line in sys.stdin:
    msg = json.loads(line)
    method, mid = msg.get("method"), msg.get("id")
    if mid is None:
        continue
    if method == "agent.initialize":
        result = '{"agent": {"name": "hand"}, "pid": %d}' % os.getpid()
    elif method == "task.assign":
        tid = json.dumps(msg["params"]["task_id"])
ON_ASSIGN
    elif method == "agent.status":
        result = '{"state": "ready"}'
    else:
        result = "{}"
    send('{"jsonrpc": "2.0", "id": %s, "result": %s}' % (json.dumps(mid), result))
    if method == "agent.shutdown":
        break
"""


def hand_agent(
    home: Home,
    tmp_path: Path,
    name: str,
    on_assign: str,
    env: dict[str, str] | None = None,
) -> None:
    body = textwrap.indent(textwrap.dedent(on_assign).strip(), " " * 8)
    script = tmp_path / f"{name}_agent.py"
    script.write_text(_TEMPLATE.replace("ON_ASSIGN", body))
    home.ensure()
    agent: dict[str, object] = {"command": [sys.executable, str(script)]}
    if env:
        agent["env"] = env
    (home.config / "agents.yaml").write_text(yaml.safe_dump({"agents": {name: agent}}))
