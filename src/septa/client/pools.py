"""Storage pools: ``admin.pool.{List,ListDrivers,Info,UsageDetails,Add,Remove,Set.*}``.

A pool is known by name. Its configuration (``admin.pool.Info``) is a set of
``key=value`` lines that always include ``driver``; the usage figures
(``admin.pool.UsageDetails``) are integers such as ``data_size`` and ``data_usage``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from .errors import QubesDaemonCommunicationError

if TYPE_CHECKING:
    from .app import Qubes

#: Pool settings that can be changed after the pool was created (``admin.pool.Set.<name>``).
SETTABLE = ("revisions_to_keep", "ephemeral_volatile")


def _lines(data: bytes) -> list[str]:
    return [line for line in data.decode().split("\n") if line]


def _key_values(data: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in _lines(data) if "=" in line)


class Pool:
    """One storage pool. Its configuration is read once, and again after a change."""

    def __init__(self, app: Qubes, name: str) -> None:
        self.app = app
        self.name = name
        self._config: dict[str, str] | None = None

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Pool {self.name}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Pool):
            return self.name == other.name
        if isinstance(other, str):
            return self.name == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name)

    def __lt__(self, other: Pool) -> bool:
        return self.name < other.name

    def _call(self, method: str, payload: bytes | None = None) -> bytes:
        return self.app.call_self(method, self.name, payload)

    @property
    def config(self) -> dict[str, str]:
        """The pool's settings (``admin.pool.Info``), including ``driver``."""
        if self._config is None:
            self._config = _key_values(self._call("admin.pool.Info"))
        return dict(self._config)

    @property
    def driver(self) -> str:
        """The name of the driver that manages the pool."""
        return self.config.get("driver", "")

    def usage_details(self) -> dict[str, int]:
        """Current size and usage figures (``admin.pool.UsageDetails``), never cached."""
        result = {}
        for key, value in _key_values(self._call("admin.pool.UsageDetails")).items():
            try:
                result[key] = int(value)
            except ValueError:
                raise QubesDaemonCommunicationError(
                    "Invalid pool usage value received: %s=%s", key, value
                ) from None
        return result

    def set(self, setting: str, value: str) -> None:
        """Change one of the :data:`SETTABLE` settings (``admin.pool.Set.<setting>``)."""
        self._call("admin.pool.Set." + setting, value.encode())
        self._config = None

    def volume_ids(self) -> list[str]:
        """Ids of the volumes the pool holds (``admin.pool.volume.List``)."""
        return _lines(self._call("admin.pool.volume.List"))


class Pools:
    """All storage pools, in the daemon's order, and the drivers that can make new ones."""

    def __init__(self, app: Qubes) -> None:
        self.app = app
        self._names: list[str] | None = None
        self._objects: dict[str, Pool] = {}
        self._drivers: dict[str, list[str]] | None = None

    def clear_cache(self) -> None:
        """Read the list again on next use."""
        self._names = None

    def names(self) -> list[str]:
        """Pool names (``admin.pool.List``)."""
        if self._names is None:
            self._names = _lines(self.app.call_self("admin.pool.List"))
        return list(self._names)

    def __contains__(self, name: object) -> bool:
        return str(name) in self.names()

    def __getitem__(self, name: str) -> Pool:
        if name not in self:
            raise KeyError(name)
        return self.get_blind(name)

    def get_blind(self, name: str) -> Pool:
        """The pool object, without checking that the pool exists."""
        pool = self._objects.get(name)
        if pool is None:
            pool = self._objects[name] = Pool(self.app, name)
        return pool

    def __iter__(self) -> Iterator[Pool]:
        return iter(self.values())

    def values(self) -> list[Pool]:
        """All pools."""
        return [self.get_blind(name) for name in self.names()]

    def drivers(self) -> dict[str, list[str]]:
        """Driver name -> names of its parameters (``admin.pool.ListDrivers``)."""
        if self._drivers is None:
            drivers = {}
            for line in _lines(self.app.call_self("admin.pool.ListDrivers")):
                name, *params = line.split(" ")
                drivers[name] = [p for p in params if p]
            self._drivers = drivers
        return dict(self._drivers)

    def add(self, name: str, driver: str, options: Mapping[str, str]) -> Pool:
        """Create a pool (``admin.pool.Add+<driver>``, one ``key=value`` line per setting)."""
        lines = [f"name={name}"] + [f"{key}={value}" for key, value in sorted(options.items())]
        self.app.call_self("admin.pool.Add", driver, "".join(f"{x}\n" for x in lines).encode())
        self.clear_cache()
        return self.get_blind(name)

    def remove(self, name: str) -> None:
        """Remove a pool (``admin.pool.Remove``); the daemon refuses while it holds volumes."""
        self.app.call_self("admin.pool.Remove", name)
        self._objects.pop(name, None)
        self.clear_cache()
