"""Tags of a qube: ``admin.vm.tag.{List,Get,Set,Remove}``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .errors import QubesTagNotFoundError
from .properties import Caller


class Tags:
    """The tags of one qube, used like a set of strings."""

    def __init__(self, vm: Caller) -> None:
        self._vm = vm

    def names(self) -> list[str]:
        """The tags, in the daemon's order."""
        data = self._vm.call_self("admin.vm.tag.List").decode()
        return [t for t in data.split("\n") if t]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, tag: object) -> bool:
        return self._vm.call_self("admin.vm.tag.Get", str(tag)) == b"1"

    def add(self, tag: str) -> None:
        """Set a tag."""
        self._vm.call_self("admin.vm.tag.Set", tag)

    def update(self, tags: Iterable[str]) -> None:
        """Set several tags."""
        for tag in tags:
            self.add(tag)

    def remove(self, tag: str) -> None:
        """Remove a tag; raises :class:`QubesTagNotFoundError` if it is not set."""
        self._vm.call_self("admin.vm.tag.Remove", tag)

    def discard(self, tag: str) -> None:
        """Remove a tag if it is set."""
        try:
            self.remove(tag)
        except QubesTagNotFoundError:
            pass
