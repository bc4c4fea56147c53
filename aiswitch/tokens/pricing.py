"""Pricing ledger records as they are written: `reported`, `calculated` or `unpriced`.

The CLI's own figure wins when it reports one (cost mode `auto`); otherwise the price
table (bundled, then `config/prices.yaml`, then the preset's `prices`) computes it; a model
the table does not know stays unpriced (`cost_usd: null`), never $0. A record is priced in
its field values (as `LedgerRecord` names them), before its line is made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiswitch.home import Home
from aiswitch.tokens.prices import PriceTable, load_price_table


def price_values(values: dict[str, Any], table: PriceTable) -> None:
    """Set a record's `cost_usd` and `cost_source` in its field values (`values`, as
    `LedgerRecord` names them; a missing count is 0)."""
    if values.get("cost_usd") is not None:
        values["cost_source"] = "reported"
        return
    get = values.get
    cost = table.cost(
        get("model"),
        get("input_tokens", 0),
        get("output_tokens", 0),
        get("cache_read_tokens", 0),
        get("cache_write_tokens", 0),
    )
    if cost is None:
        values["cost_source"] = "unpriced"
    else:
        values["cost_usd"] = round(cost, 8)
        values["cost_source"] = "calculated"


def record_pricer(
    home: Home, preset_prices: Mapping[str | None, Mapping[str, Any]] | None = None
) -> Callable[[dict[str, Any]], None]:
    """A pricer for a run's records (`price_values`, by each record's `preset`): one
    table per preset that overrides prices, built once."""
    base = load_price_table(home)
    tables: dict[str | None, PriceTable] = {}
    overrides = preset_prices or {}

    def price(values: dict[str, Any]) -> None:
        preset = values.get("preset")
        table = tables.get(preset)
        if table is None:
            extra = overrides.get(preset)
            table = load_price_table(home, extra) if extra else base
            tables[preset] = table
        price_values(values, table)

    return price
