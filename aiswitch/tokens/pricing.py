"""Pricing ledger records as they are written: `reported`, `calculated` or `unpriced`.

The CLI's own figure wins when it reports one (cost mode `auto`); otherwise the price
table (bundled, then `config/prices.yaml`, then the preset's `prices`) computes it; a model
the table does not know stays unpriced (`cost_usd: null`), never $0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiswitch.home import Home
from aiswitch.tokens.prices import PriceTable, load_price_table
from aiswitch.tokens.records import LedgerRecord


def price_record(record: LedgerRecord, table: PriceTable) -> LedgerRecord:
    if record.cost_usd is not None:
        return record.model_copy(update={"cost_source": "reported"})
    cost = table.cost(
        record.model,
        record.input_tokens,
        record.output_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
    )
    if cost is None:
        return record.model_copy(update={"cost_source": "unpriced"})
    return record.model_copy(update={"cost_usd": round(cost, 8), "cost_source": "calculated"})


def record_pricer(
    home: Home, preset_prices: Mapping[str | None, Mapping[str, Any]] | None = None
) -> Callable[[LedgerRecord], LedgerRecord]:
    """A pricer for a run: one table per preset that overrides prices, built once."""
    base = load_price_table(home)
    tables: dict[str | None, PriceTable] = {}
    overrides = preset_prices or {}

    def price(record: LedgerRecord) -> LedgerRecord:
        table = tables.get(record.preset)
        if table is None:
            extra = overrides.get(record.preset)
            table = load_price_table(home, extra) if extra else base
            tables[record.preset] = table
        return price_record(record, table)

    return price
