"""Labels (the colours that mark qubes): ``admin.label.{List,Get,Index,Create,Remove}``."""

from __future__ import annotations

from collections.abc import Iterator

from .errors import QubesLabelNotFoundError
from .properties import Caller


class Label:
    """One label; its colour and index are read from the daemon on first use."""

    def __init__(self, system: Caller, name: str) -> None:
        self._system = system
        self._name = name
        self._color: str | None = None
        self._index: int | None = None

    @property
    def name(self) -> str:
        """The label's name, like ``red``."""
        return self._name

    @property
    def color(self) -> str:
        """The colour as the daemon gives it, like ``0xcc0000``."""
        if self._color is None:
            self._color = self._system.call_self("admin.label.Get", self._name).decode()
        return self._color

    @property
    def index(self) -> int:
        """The label's number (1 for red ... 8 for black)."""
        if self._index is None:
            self._index = int(self._system.call_self("admin.label.Index", self._name))
        return self._index

    @property
    def icon(self) -> str:
        """The freedesktop icon name of the label."""
        return "appvm-" + self._name

    def __str__(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"Label({self._name!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Label):
            return self._name == other._name
        if isinstance(other, str):
            return self._name == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._name)


class Labels:
    """The labels defined on the system."""

    def __init__(self, system: Caller) -> None:
        self._system = system
        self._names: list[str] | None = None
        self._objects: dict[str, Label] = {}

    def clear_cache(self) -> None:
        """Forget the list of names (objects already handed out stay valid)."""
        self._names = None

    def names(self) -> list[str]:
        """Label names in the daemon's order."""
        if self._names is None:
            data = self._system.call_self("admin.label.List").decode()
            self._names = [n for n in data.split("\n") if n]
        return list(self._names)

    def get_blind(self, name: str) -> Label:
        """A label object without checking that it exists."""
        label = self._objects.get(name)
        if label is None:
            label = self._objects[name] = Label(self._system, name)
        return label

    def __contains__(self, name: object) -> bool:
        return str(name) in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __getitem__(self, name: str) -> Label:
        if name not in self:
            raise QubesLabelNotFoundError("no such label: '%s'", name)
        return self.get_blind(name)

    def values(self) -> list[Label]:
        """All label objects, in the daemon's order."""
        return [self.get_blind(n) for n in self.names()]

    def find(self, spec: str | int) -> Label:
        """A label by name, or else by its index (``"4"`` or ``4`` is green)."""
        text = str(spec)
        if text in self:
            return self.get_blind(text)
        if text.isdigit():
            for label in self.values():
                if label.index == int(text):
                    return label
        raise QubesLabelNotFoundError("no such label: '%s'", text)

    def create(self, name: str, color: str) -> Label:
        """Define a new label with the colour ``0xRRGGBB``."""
        self._system.call_self("admin.label.Create", name, color.encode())
        self.clear_cache()
        return self.get_blind(name)

    def remove(self, name: str) -> None:
        """Delete a label (the daemon refuses if a qube uses it)."""
        self._system.call_self("admin.label.Remove", name)
        self._objects.pop(name, None)
        self.clear_cache()
