"""Labels: the colours that mark each qube's windows, the 8 Qubes defaults and custom ones."""

from __future__ import annotations

import re
from dataclasses import dataclass

from septa.core.errors import QubesLabelNotFoundError, QubesValueError

DEFAULT_LABELS: tuple[tuple[int, str, str], ...] = (
    (1, "red", "0xcc0000"),
    (2, "orange", "0xf57900"),
    (3, "yellow", "0xedd400"),
    (4, "green", "0x73d216"),
    (5, "gray", "0x555555"),
    (6, "blue", "0x3465a4"),
    (7, "purple", "0x75507b"),
    (8, "black", "0x000000"),
)
_NAME = re.compile(r"\A[a-zA-Z][a-zA-Z0-9_-]{0,31}\Z")
_COLOR = re.compile(r"\A0x[0-9a-fA-F]{6}\Z")


@dataclass(frozen=True)
class Label:
    """A label: index (stable id), colour as ``0xRRGGBB`` and name."""

    index: int
    color: str
    name: str

    def __str__(self) -> str:
        return self.name

    @property
    def icon(self) -> str:
        return f"appvm-{self.name}"


class Labels:
    """The registry's labels, found by name, by ``label-N`` id or by index."""

    def __init__(self) -> None:
        self._by_index: dict[int, Label] = {}

    def add(self, label: Label) -> None:
        self._by_index[label.index] = label

    def add_defaults(self) -> None:
        for index, name, color in DEFAULT_LABELS:
            self.add(Label(index, color, name))

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._by_index.values(), key=lambda lab: lab.index))

    def __len__(self) -> int:
        return len(self._by_index)

    def __getitem__(self, key: str | int) -> Label:
        if isinstance(key, int):
            if key in self._by_index:
                return self._by_index[key]
        else:
            for label in self._by_index.values():
                if label.name == key or f"label-{label.index}" == key:
                    return label
        raise QubesLabelNotFoundError(key)

    def __contains__(self, key: str | int) -> bool:
        try:
            self[key]
        except QubesLabelNotFoundError:
            return False
        return True

    def create(self, name: str, color: str) -> Label:
        """A new custom label with the next free index."""
        if not _NAME.match(name):
            raise QubesValueError("Invalid label name: must start with a letter, "
                                  "then letters, digits, '-' or '_', at most 32 characters")
        if not _COLOR.match(color):
            raise QubesValueError("Invalid colour: expected 0xRRGGBB")
        if name in self:
            raise QubesValueError(f"Label {name} already exists")
        label = Label(max(self._by_index, default=0) + 1, color.lower(), name)
        self.add(label)
        return label

    def remove(self, name: str) -> Label:
        label = self[name]
        if label.index <= len(DEFAULT_LABELS):
            raise QubesValueError(f"Label {name} is a default label and cannot be removed")
        del self._by_index[label.index]
        return label
