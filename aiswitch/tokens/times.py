"""Ledger times at the edges of the calendar.

Contract: a ledger line's `ts` must name an instant that exists in UTC, years 1 to 9999
(`FIRST_TS <= seconds <= LAST_TS`, seconds since the epoch); a line outside is malformed,
like any bad timestamp (`0001-01-01T00:00:00+01:00` is year 0 in UTC). `local_date(moment,
zone)` and `local_day(seconds, zone)` are the calendar day of an instant in `zone`, the first
or last day there is when the zone's offset pushes it past year 1 or 9999: never an error.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo

# Every UTC offset in use is a multiple of 15 minutes, so all instants of one 15-minute slot
# fall on the same local day in every timezone: reports compute a slot's calendar once, and
# the prune rollup keeps sums per slot, so reports by day stay exact after a prune.
SLOT_SECONDS = 900
FIRST_TS = datetime.min.replace(tzinfo=UTC).timestamp()
LAST_TS = datetime.max.replace(tzinfo=UTC).timestamp()


def local_day(seconds: float, zone: tzinfo) -> date:
    """The day of the instant `seconds` after the epoch in `zone`; the first or last day
    there is when the instant is beyond them."""
    try:
        return datetime.fromtimestamp(seconds, zone).date()
    except (OverflowError, OSError, ValueError):
        return date.min if seconds < 0 else date.max


def local_date(moment: datetime, zone: tzinfo) -> date:
    """The day of `moment` (aware; naive means UTC) in `zone`, as `local_day`."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return local_day(aware.timestamp(), zone)
