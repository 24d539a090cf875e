"""The collection of qubes: ``admin.vm.List`` and ``admin.vm.Remove``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from .errors import QubesVMNotFoundError
from .vm import QubesVM

if TYPE_CHECKING:
    from .app import Qubes


def parse_vm_list(data: bytes) -> dict[str, dict[str, str]]:
    """Parse ``name class=.. state=.. uuid=..`` lines into name -> fields."""
    result: dict[str, dict[str, str]] = {}
    for line in data.decode().split("\n"):
        if not line:
            continue
        name, _, rest = line.partition(" ")
        result[name] = dict(w.split("=", 1) for w in rest.split(" ") if "=" in w)
    return result


class VMCollection:
    """All qubes the daemon lets us see, addressed by name."""

    def __init__(self, app: Qubes) -> None:
        self.app = app
        self._list: dict[str, dict[str, str]] | None = None
        self._objects: dict[str, QubesVM] = {}

    def clear_cache(self) -> None:
        """Read the list again on next use."""
        self._list = None

    def refresh(self, force: bool = False) -> None:
        """Read ``admin.vm.List`` (unless already read)."""
        if self._list is not None and not force:
            return
        self._list = parse_vm_list(self.app.call("dom0", "admin.vm.List"))
        for name, vm in list(self._objects.items()):
            entry = self._list.get(name)
            if entry is None or not vm.matches_class(entry.get("class")):
                # gone, or replaced by a qube of another class under the same name
                del self._objects[name]

    def info(self, name: str) -> dict[str, str]:
        """The fields ``admin.vm.List`` gave for a qube (class, state, uuid...)."""
        self.refresh()
        assert self._list is not None
        try:
            return dict(self._list[name])
        except KeyError:
            raise QubesVMNotFoundError("no such domain: '%s'", name) from None

    def names(self) -> list[str]:
        """Names of all qubes, sorted."""
        self.refresh()
        assert self._list is not None
        return sorted(self._list)

    def get_blind(self, name: str) -> QubesVM:
        """A qube object without checking that it exists."""
        vm = self._objects.get(name)
        if vm is None:
            klass = state = None
            if self._list is not None and name in self._list:
                klass = self._list[name].get("class")
                if self.app.cache_enabled:
                    state = self._list[name].get("state")
            vm = self._objects[name] = QubesVM(self.app, name, klass=klass, power_state=state)
        return vm

    def __contains__(self, name: object) -> bool:
        self.refresh()
        assert self._list is not None
        return str(name) in self._list

    def __getitem__(self, name: str) -> QubesVM:
        if name not in self:
            raise QubesVMNotFoundError("no such domain: '%s'", name)
        return self.get_blind(name)

    def get(self, name: str) -> QubesVM | None:
        """The qube, or None if there is none of that name."""
        return self[name] if name in self else None

    def __iter__(self) -> Iterator[QubesVM]:
        return iter(self.values())

    def __len__(self) -> int:
        return len(self.names())

    def values(self) -> list[QubesVM]:
        """All qubes, sorted by name."""
        return [self.get_blind(name) for name in self.names()]

    def remove(self, name: str) -> None:
        """Remove a qube and its volumes (``admin.vm.Remove``)."""
        self.app.call(name, "admin.vm.Remove")
        self._objects.pop(name, None)
        self.clear_cache()
