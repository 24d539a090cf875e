"""The pool drivers by name: the built-in ones and those of Python entry points.

A third party adds a driver by declaring, in its package metadata, an entry point of
group ``septa.storage`` whose name is the driver name and whose object is a subclass of
:class:`~septa.storage.pool.Pool`::

    [project.entry-points."septa.storage"]
    my-driver = "my_package.pool:MyPool"
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading

from septa.storage.file import FilePool
from septa.storage.kernel import KernelPool
from septa.storage.lvm_thin import ThinPool
from septa.storage.model import StorageValueError
from septa.storage.pool import Pool
from septa.storage.reflink import ReflinkPool

ENTRY_POINT_GROUP = "septa.storage"
log = logging.getLogger(__name__)

_drivers: dict[str, type[Pool]] = {}
_loaded = False
_guard = threading.Lock()


def register_driver(cls: type[Pool], name: str | None = None) -> None:
    """Make ``cls`` available under ``name`` (default: its ``driver`` attribute)."""
    if not (isinstance(cls, type) and issubclass(cls, Pool)):
        raise StorageValueError(f"{cls!r} is not a storage pool class")
    with _guard:
        _drivers[name or cls.driver] = cls


for _builtin in (FilePool, ReflinkPool, ThinPool, KernelPool):
    register_driver(_builtin)


def _load_entry_points() -> None:
    global _loaded
    with _guard:
        if _loaded:
            return
        _loaded = True
        found = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    for entry in found:
        if entry.name in _drivers:
            continue
        try:
            cls = entry.load()
            register_driver(cls, entry.name)
        except Exception:  # a broken plug-in must not break the others
            log.exception("Cannot load storage driver %r from %s", entry.name, entry.value)


def reload_entry_points() -> None:
    """Look at the installed entry points again (after installing a plug-in)."""
    global _loaded
    with _guard:
        _loaded = False
    _load_entry_points()


def driver_names() -> list[str]:
    _load_entry_points()
    with _guard:
        return sorted(_drivers)


def get_driver(name: str) -> type[Pool]:
    _load_entry_points()
    with _guard:
        cls = _drivers.get(name)
    if cls is None:
        raise StorageValueError(f"Unknown storage pool driver {name!r} "
                                f"(known: {', '.join(driver_names())})")
    return cls


def driver_parameters(name: str) -> list[str]:
    """The settings a pool of the driver takes (admin.pool.ListDrivers), sorted."""
    cls = get_driver(name)
    return sorted({**cls.common_parameters, **cls.parameters})


def create_pool(driver: str, name: str, **config: str | int | bool) -> Pool:
    """A pool object of ``driver`` (not set up yet: call its ``setup()`` when adding it)."""
    return get_driver(driver)(name, **config)
