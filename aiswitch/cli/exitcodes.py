"""Exit codes of `aiswitch` (docs/cli.md lists them)."""

OK = 0
FAILED = 1  # a run in which no agent succeeded
USAGE = 2  # bad arguments or input
CONFIG = 3  # an invalid config file or preset
STATE = 4  # a state file that cannot be read or written
AGENT = 5  # an unknown or unavailable agent
QUOTA = 6  # a quota forbids starting the task
PARTIAL = 7  # a run in which some agents failed
BUDGET = 8  # a run stopped by --budget-usd / --budget-tokens
CANCELLED = 130  # Ctrl-C (SIGINT) or SIGTERM

RUN_STATUS = {
    "ok": OK,
    "partial": PARTIAL,
    "failed": FAILED,
    "cancelled": CANCELLED,
    "budget_exceeded": BUDGET,
}
