"""How each field of a ledger line is stored and read: the kinds the ledger's one declaration
(`aiswitch.tokens.records.LedgerRecord`) tags its fields with.

Contract: a field of `LedgerRecord` carries one `Stored` marker in its annotation. The marker
says what a line may hold for that field (its `kind`, below) and whether reports read it
(`row`: the field is part of the report row, in declaration order after the time). Every
reader of ledger lines (reports' fast reader, export, prune, import) derives its rules from
these markers, so they accept and refuse exactly the same lines; adding a field is one line
in `LedgerRecord`.

Kinds (what a line may hold; a missing field takes the declared default):

- `version`: an integer of 64 bits.
- `time`: required; ISO 8601 text (`datetime.fromisoformat`), no zone means UTC, and the
  instant must lie in years 1-9999 in UTC.
- `source`: text or null; null or empty means `aiswitch`.
- `text`: text or null.
- `int`: an integer of 64 bits, or null.
- `count`: an integer from 0 to 2**63-1 (never a bool, a float or text such as "5000").
- `cost`: a number (an integer of 64 bits or a float), or null.
- `cost_source`: one of the names of `records.CostSource`.

No imports beyond the standard library: this module sits below pydantic and msgspec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["version", "time", "source", "text", "int", "count", "cost", "cost_source"]
DEFAULT_SOURCE = "aiswitch"
# The largest integer a ledger line holds as one (orjson reads no larger integer as an int).
MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)


@dataclass(frozen=True)
class Stored:
    """How a `LedgerRecord` field is stored in a line, and whether report rows carry it."""

    kind: Kind
    row: bool = False
