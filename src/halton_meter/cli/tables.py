"""Rich tables that fit the terminal: drop the least important columns instead of mangling all.

Rich shrinks every column of a table that is too wide, so numbers end in "…" and are useless.
Here each column has a priority; when the table would not fit, the lowest-priority columns are
left out whole (the full data is always in --json).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Padding and separator per column in box.SIMPLE_HEAD with the default (0, 1) padding.
_COLUMN_OVERHEAD = 3


@dataclass
class Column:
    header: str
    cells: list[str] = field(default_factory=list)
    footer: str = ""
    numeric: bool = False
    # 0 = always shown; higher numbers are dropped first when the terminal is narrow.
    priority: int = 0

    def width(self) -> int:
        texts = [self.header, self.footer, *self.cells]
        return max(Text.from_markup(text).cell_len for text in texts)


def fitted_table(console: Console, title: str, columns: list[Column]) -> Table:
    shown = list(columns)
    while sum(c.width() + _COLUMN_OVERHEAD for c in shown) + 3 > console.width:
        droppable = [c for c in shown if c.priority > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda c: (c.priority, shown.index(c))))
    has_footer = any(c.footer for c in shown)
    table = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, show_footer=has_footer)
    for column in shown:
        table.add_column(
            column.header,
            footer=column.footer,
            justify="right" if column.numeric else "left",
            no_wrap=column.numeric,
            overflow="fold",
        )
    for row in zip(*(c.cells for c in shown), strict=True):
        table.add_row(*row)
    return table
