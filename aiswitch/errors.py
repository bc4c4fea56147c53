"""The one error root of aiswitch.

Every error a user can cause, or that the environment causes, is an `AiswitchError`.
The CLI catches `AiswitchError` in one place, prints its one-line message (plus the
`hint`, when there is one) on stderr, and exits with its `exit_code`; anything else
is a bug and keeps its traceback.

    AiswitchError                      exit 2 unless a subclass says otherwise
    ├── UsageError                     bad arguments or input (exit 2)
    ├── ConfigError                    an unreadable or invalid config file (exit 3)
    │   ├── PresetError                unknown preset, bad name, unresolved reference
    │   └── PlanError                  a plan file that cannot run: one line per problem
    ├── StateError                     a state file that cannot be read or written (exit 4)
    ├── AgentError                     an agent cannot be used (exit 5)
    │   ├── UnknownAgentError          no such agent defined
    │   ├── AgentUnavailableError      its binary is missing or too old
    │   ├── AgentStartError            it did not start or did not finish its handshake
    │   │                              (or its start retries are spent: fatal)
    │   └── AgentDiedError             its process ended (crashed, or was killed as hung)
    │                                  while it ran a task
    ├── QuotaExceededError             a quota forbids starting the task (exit 6)
    ├── WorkspaceError                 a workspace cannot be made, found, or applied
    │                                  (not a git repository, a dirty tree, a conflict; exit 2)
    ├── ExecutorError                  the executor's backend cannot run tasks (a Ray cluster
    │                                  out of reach, no node offering the agent; exit 5)
    └── RpcError                       a JSON-RPC failure (see aiswitch.rpc.errors)
        ├── RemoteError                the peer answered with an error object
        ├── RequestTimeoutError        no reply within the request's timeout
        └── ConnectionClosedError      the peer's stream ended (EOF, exit) with requests pending
"""

from __future__ import annotations


class AiswitchError(Exception):
    """Root of every error aiswitch reports to a user."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and hint as a single line for stderr."""
        text = self.message.replace("\n", " ").strip()
        if self.hint:
            text = f"{text} ({self.hint})"
        return text

    def lines(self) -> list[str]:
        """What the CLI prints: one line, or one per problem for an error listing several."""
        return [self.one_line()]


class UsageError(AiswitchError):
    """Bad arguments or input."""

    exit_code = 2


class ConfigError(AiswitchError):
    """A config file that cannot be read or is invalid."""

    exit_code = 3


class PresetError(ConfigError):
    """An unknown preset, an invalid name, or a reference that does not resolve."""


class PlanError(ConfigError):
    """A plan that cannot run: every problem found, one line each (`lines()`)."""

    # An error lists at most this many problems, then says how many more.
    MAX_LISTED = 20

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0] if problems else "the plan is invalid")
        self.problems = problems

    def lines(self) -> list[str]:
        listed = self.problems[: self.MAX_LISTED]
        more = len(self.problems) - len(listed)
        return listed + ([f"(and {more} more problems)"] if more > 0 else [])

    def one_line(self) -> str:
        return "; ".join(self.lines())


class StateError(AiswitchError):
    """A state file that cannot be read or written."""

    exit_code = 4


class AgentError(AiswitchError):
    """An agent that cannot be used."""

    exit_code = 5


class UnknownAgentError(AgentError):
    """No agent of that name is defined."""


class AgentUnavailableError(AgentError):
    """The agent's program is missing, or too old."""


class AgentStartError(AgentError):
    """The agent's process did not start, or did not finish its handshake."""


class AgentDiedError(AgentError):
    """The agent's process ended while it ran a task; `hung` when the supervisor killed it
    for missing its heartbeat."""

    def __init__(self, message: str, *, hung: bool = False) -> None:
        super().__init__(message)
        self.hung = hung


class QuotaExceededError(AiswitchError):
    """A quota forbids starting a task."""

    exit_code = 6


class ExecutorError(AiswitchError):
    """The executor's backend cannot run tasks (a Ray cluster out of reach, no node
    offering the agent)."""

    exit_code = 5


class WorkspaceError(AiswitchError):
    """A workspace cannot be made, found or applied (aiswitch.workspace)."""

    exit_code = 2
