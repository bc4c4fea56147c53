"""Amounts of US dollars as text: the one formatting every message, table and summary uses.

Contract: `format_usd(value)` is `$` and the amount:

- at least $1: two decimals with thousands separators (`$1,234.57`);
- from a cent to $1: up to four decimals, at least two (`$0.50`, `$0.1235`);
- under a cent (and not 0): three significant digits, trailing zeros dropped (`$0.001`,
  `$0.000123`), so a small amount never reads `$0.00`;
- 0 is `$0.00`; a negative amount is `-` and the same text for its size.

`None` is not an amount (an unpriced request): callers say "unpriced" themselves.
"""

from __future__ import annotations

CENT = 0.01
SIGNIFICANT_UNDER_A_CENT = 3
DECIMALS_UNDER_A_DOLLAR = 4


def format_usd(value: float) -> str:
    if value < 0:
        return "-" + format_usd(-value)
    if value >= 1:
        return f"${value:,.2f}"
    if value >= CENT or value == 0:
        text = f"{value:.{DECIMALS_UNDER_A_DOLLAR}f}"
        # Keep two decimals (cents), drop zeros beyond them.
        head, tail = text[:-2], text[-2:].rstrip("0")
        text = head + tail
        if text == "1.00":  # 0.99996 rounds up to a dollar
            return "$1.00"
        return "$" + text
    text = f"{value:.{SIGNIFICANT_UNDER_A_CENT}g}"
    if "e" in text:  # below 1e-4 `g` switches to exponents: write the decimals out
        digits = -int(text.split("e")[1]) + SIGNIFICANT_UNDER_A_CENT - 1
        text = f"{value:.{digits}f}".rstrip("0")
    return "$" + text
