"""Plain text tables in the layout of ``column -t`` (as Qubes' tools print them).

Every column but the last is padded to its widest cell; columns are separated by two
spaces; the last cell of a row is not padded.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Sequence
from typing import TextIO


def display_width(text: str) -> int:
    """Terminal cells the text takes (wide East Asian characters count twice)."""
    if text.isascii():
        return len(text)
    return sum(
        0
        if unicodedata.combining(ch)
        else 2
        if unicodedata.east_asian_width(ch) in ("W", "F")
        else 1
        for ch in text
    )


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """The rows laid out as aligned columns, one line each."""
    if not rows:
        return ""
    ncols = max(len(row) for row in rows)
    widths = [0] * ncols
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], display_width(cell))
    lines = []
    for row in rows:
        parts = [cell + " " * (widths[i] - display_width(cell)) for i, cell in enumerate(row[:-1])]
        parts.extend(row[-1:])
        lines.append("  ".join(parts) + "\n")
    return "".join(lines)


def print_table(rows: Sequence[Sequence[str]], stream: TextIO | None = None) -> None:
    """Write the rows as an aligned table."""
    (stream or sys.stdout).write(format_table(rows))
