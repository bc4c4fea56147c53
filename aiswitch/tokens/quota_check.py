"""The quota check of a run, for a home that may set no quotas at all.

`check_for(home)` is `aiswitch.tokens.quotas.make_quota_check(home)` when the home has a
quotas file (`config/quotas.yaml`), and None (nothing to check) when it has none: the
quotas module (limits, usage sums; ~3 ms of a run's start to import here) is imported only
for a home that sets quotas.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from aiswitch.home import Home

QUOTAS_FILE: Final = "quotas.yaml"
QuotaCheck = Callable[[str, str | None], None]


def quotas_path(home: Home) -> Path:
    return home.config / QUOTAS_FILE


def check_for(home: Home, timezone: str | None = None) -> QuotaCheck | None:
    """The check to make before each task (`make_quota_check`), or None without quotas."""
    if not quotas_path(home).exists():
        return None
    from aiswitch.tokens.quotas import make_quota_check

    return make_quota_check(home, timezone)
