"""The adapter SDK: write an agent by implementing `Adapter.run_task`, then `serve()` it.

    class Echo(Adapter):
        name = "echo"

        async def run_task(self, ctx: TaskContext) -> TaskOutcome:
            await ctx.progress("thinking")
            return TaskOutcome(output=ctx.prompt)

    if __name__ == "__main__":
        serve(Echo())

The SDK speaks the whole protocol (docs/protocol.md) on stdin/stdout: the handshake,
concurrency limits, cancellation, task status and results, env.switch/snapshot/rollback,
metrics and shutdown. It exits by itself when stdin closes or the parent process is
gone, cancelling running tasks (so their `finally` blocks can kill any CLI they run).
Logs go to stderr, which the parent keeps in `logs/agents/<run_id>/<agent-id>.log`.
`light_usage(...)` is `Usage(...)` without pydantic for valid counts (an adapter whose
task path builds no model then runs without importing pydantic at all).
"""

# The names are loaded on first use (PEP 562): the parent imports one module of this
# package (`environment`, the preset variables' names it shares with adapters), and
# importing it must not load the server, the wire and the stdio peer into every run.
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiswitch.adapter_sdk.adapter import Adapter, TaskContext, TaskFailed, TaskOutcome
    from aiswitch.adapter_sdk.server import serve
    from aiswitch.adapter_sdk.wire import light_usage

__all__ = ["Adapter", "TaskContext", "TaskFailed", "TaskOutcome", "light_usage", "serve"]
_HOMES = {name: "adapter" for name in __all__} | {"serve": "server", "light_usage": "wire"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
