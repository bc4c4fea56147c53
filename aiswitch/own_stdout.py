"""This process's stdout for one writer.

`--json` / `--jsonl` output and a JSON-RPC pipe (an adapter's, the MCP server's) are only
sound if nothing else writes there. `hold()` hands the caller the stdout stream and points
`sys.stdout` at stderr, so that what other code prints meanwhile (a library's notices: Ray's
driver prints its cluster's errors to `sys.stdout`, from its own thread) lands on stderr.
`held()` does the same for a `with` block and gives stdout back at its end. Holding it
again returns the stream already held.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TextIO

_held: TextIO | None = None


def hold() -> TextIO:
    """The real stdout, for the caller alone from now on; `sys.stdout` is stderr."""
    global _held
    if _held is None:
        _held = sys.stdout
        sys.stdout = sys.stderr
    return _held


@contextlib.contextmanager
def held() -> Iterator[TextIO]:
    """`hold()` for a `with` block: stdout is given back at its end (if this took it)."""
    global _held
    taken = _held is None
    out = hold()
    try:
        yield out
    finally:
        if taken:
            sys.stdout, _held = out, None
