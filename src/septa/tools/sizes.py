"""Sizes given on the command line: plain bytes, or a number with a unit.

Units as Qubes' tools take them (case does not matter): K/KB, M/MB, G/GB are powers
of 1000; Ki/KiB, Mi/MiB, Gi/GiB powers of 1024.
"""

from __future__ import annotations

from septa.client.errors import QubesException

_UNITS = (
    ("KIB", 1024),
    ("MIB", 1024**2),
    ("GIB", 1024**3),
    ("KI", 1024),
    ("MI", 1024**2),
    ("GI", 1024**3),
    ("KB", 1000),
    ("MB", 1000**2),
    ("GB", 1000**3),
    ("K", 1000),
    ("M", 1000**2),
    ("G", 1000**3),
)


def parse_size(text: str) -> int:
    """The number of bytes ``text`` stands for; QubesException if it is not a size."""
    size = text.strip().upper()
    if size.isdigit():
        return int(size)
    for unit, multiplier in _UNITS:
        if size.endswith(unit):
            number = size[: -len(unit)].strip()
            if number.isdigit():
                return int(number) * multiplier
            break
    raise QubesException("Invalid size: %s.", size)
