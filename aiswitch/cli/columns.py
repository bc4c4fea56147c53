"""Tables that fit the terminal: columns give way by priority instead of being cut at random.

One mechanism for every live table (the run view's, `ps`'s and `top`'s). A table names one
column of long text that shrinks first (the run view's last line, `ps`'s run id), down to
its minimum; then the columns in its give-way order are left out, first to last, until the
rest fits; then the shrinking column takes what room is left, and is left out too when
that is narrower than its header. The other columns always stay.

A shrunk cell ends in "…" (`cut="end"`) or starts with it (`cut="start"`, for ids whose
distinct part is their end). Cells are rich renderables or plain values (shown with
`str`); their widths are terminal cells, header and footer included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.table import Table

# Between two columns of a table (rich's padding (0, 1), no outer edge).
COLUMN_GAP = 2


@dataclass(frozen=True)
class Fit:
    """How a table's columns give way on a narrow terminal."""

    # Left out in this order, first to last, when the table is wider than the terminal.
    give_way: tuple[str, ...] = ()
    # The column of long text that shrinks first, and the fewest cells it shrinks to
    # before any column gives way.
    shrink: str | None = None
    shrink_min: int = 16
    cut: Literal["end", "start"] = "end"
    # Columns aligned right (figures).
    right: frozenset[str] = field(default_factory=frozenset)


def fit_columns(
    names: Sequence[str], width: Callable[[str], int], room: int, fit: Fit
) -> tuple[list[str], int]:
    """The columns of `names` that fit in `room` cells, and the width the shrinking column
    gets (0 without one). `width(name)`: the column's natural width."""
    shown = list(names)
    shrink = fit.shrink if fit.shrink in shown else None

    def fixed(columns: list[str]) -> int:
        return sum(width(n) + COLUMN_GAP for n in columns if n != shrink) - (
            COLUMN_GAP if shrink is None and columns else 0
        )

    wanted = width(shrink) if shrink is not None else 0
    for name in fit.give_way:
        if fixed(shown) + min(wanted, fit.shrink_min) <= room:
            break
        if name in shown:
            shown.remove(name)
    if shrink is None:
        return shown, 0
    shrink_width = max(0, min(wanted, room - fixed(shown)))
    if shrink_width < len(shrink):
        shown.remove(shrink)
        shrink_width = 0
    return shown, shrink_width


def shrunk(text: str, cells: int, cut: Literal["end", "start"]) -> str:
    """`text` in at most `cells` cells, with "…" where it was cut."""
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) <= cells:
        return text
    if cells <= 0:
        return ""
    if cut == "end":
        return set_cell_size(text, cells - 1) + "…"
    tail = text
    while tail and cell_len(tail) > cells - 1:
        tail = tail[1:]
    return "…" + tail


def fitted_table(
    names: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    room: int,
    fit: Fit,
    footer: Mapping[str, str] | None = None,
) -> Table:
    """A rich table of `rows` (one mapping of column name to cell each) whose columns
    give way as `fit` says to fit in `room` cells; `footer`: a last line, by column."""
    from rich.cells import cell_len
    from rich.table import Table

    def width(name: str) -> int:
        cells = [cell_len(str(row[name])) for row in rows]
        if footer is not None:
            cells.append(cell_len(footer.get(name, "")))
        return max([cell_len(name), *cells])

    shown, shrink_width = fit_columns(names, width, room, fit)
    table = Table(box=None, pad_edge=False, expand=False, show_footer=footer is not None)
    for name in shown:
        table.add_column(
            name,
            justify="right" if name in fit.right else "left",
            no_wrap=True,
            overflow="ellipsis",
            footer=_cut(footer.get(name, ""), name, shrink_width, fit) if footer else "",
        )
    for row in rows:
        table.add_row(*(_cut(row[name], name, shrink_width, fit) for name in shown))
    return table


def _cut(cell: Any, name: str, shrink_width: int, fit: Fit) -> Any:
    from rich.cells import cell_len
    from rich.text import Text

    if name != fit.shrink or cell_len(str(cell)) <= shrink_width:
        return cell if not isinstance(cell, int | float) else str(cell)
    style = cell.style if isinstance(cell, Text) else ""
    return Text(shrunk(str(cell), shrink_width, fit.cut), style=style)
