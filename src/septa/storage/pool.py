"""A storage pool: a named, configured instance of a driver that holds volumes.

The pool keeps the volume objects initialised in this process (one per vid, with one
lock per vid shared by every object of that vid), finds stored volumes that were not
initialised, and reads and writes its Qubes ``<pool>`` element.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lxml import etree

from septa.core.errors import StoragePoolException
from septa.storage.model import (
    StorageValueError,
    VolumeConfig,
    check_name,
    check_vid,
    parse_bool,
    parse_int,
)
from septa.storage.volume import Volume


@dataclass
class _PoolState:
    volumes: dict[str, Volume] = field(default_factory=dict)
    locks: dict[str, threading.RLock] = field(default_factory=dict)
    importing: set[str] = field(default_factory=set)
    guard: threading.Lock = field(default_factory=threading.Lock)


class Pool(abc.ABC):
    """A configured storage pool of one driver.

    ``parameters`` maps each setting of the driver to its default (None: required).
    ``revisions_to_keep`` and ``ephemeral_volatile`` are common to all drivers.
    """

    driver: ClassVar[str]
    parameters: ClassVar[dict[str, str | None]] = {}
    volume_class: ClassVar[type[Volume]]
    common_parameters: ClassVar[dict[str, str | None]] = {
        "revisions_to_keep": "1", "ephemeral_volatile": "False"}

    def __init__(self, name: str, **config: str | int | bool) -> None:
        self.name = check_name(name, "pool name")
        known = {**self.common_parameters, **self.parameters}
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise StorageValueError(f"Pool {name!r}: driver {self.driver!r} has no setting "
                                    f"{', '.join(unknown)}; it takes {', '.join(sorted(known))}")
        values: dict[str, str] = {}
        for key, default in known.items():
            if key in config:
                values[key] = str(config[key])
            elif default is None:
                raise StorageValueError(f"Pool {name!r}: driver {self.driver!r} needs the "
                                        f"setting {key}")
            else:
                values[key] = default
        self._settings = values
        self._revisions_to_keep = 0
        self.revisions_to_keep = values.get("revisions_to_keep", "0")
        self.ephemeral_volatile = values.get("ephemeral_volatile", "False")
        self._state = _PoolState()

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # ----- settings -----------------------------------------------------------------

    @property
    def config(self) -> dict[str, str]:
        """All settings as strings, with ``driver`` and ``name`` (the ``<pool>`` attributes)."""
        return {"driver": self.driver, "name": self.name, **self._settings}

    @property
    def revisions_to_keep(self) -> int:
        return self._revisions_to_keep

    @revisions_to_keep.setter
    def revisions_to_keep(self, value: int | str) -> None:
        number = parse_int(value, "revisions_to_keep", -1)
        limit = self.volume_class.max_revisions
        if limit is not None and number > limit:
            raise StorageValueError(f"Pool {self.name!r}: driver {self.driver!r} keeps at most "
                                    f"{limit} revisions")
        self._revisions_to_keep = number
        if "revisions_to_keep" in self._settings:
            self._settings["revisions_to_keep"] = str(number)

    @property
    def ephemeral_volatile(self) -> bool:
        return parse_bool(self._settings.get("ephemeral_volatile", "False"))

    @ephemeral_volatile.setter
    def ephemeral_volatile(self, value: bool | str) -> None:
        flag = parse_bool(value, "ephemeral_volatile")
        if "ephemeral_volatile" in self._settings:
            self._settings["ephemeral_volatile"] = str(flag)
        elif flag:
            raise StorageValueError(f"Pool {self.name!r}: driver {self.driver!r} has no "
                                    "volatile volumes")

    def setting(self, key: str) -> str:
        return self._settings[key]

    def error(self, problem: str) -> StoragePoolException:
        return StoragePoolException(f"Pool {self.name} ({self.driver}): {problem}")

    # ----- life cycle ---------------------------------------------------------------

    @abc.abstractmethod
    def setup(self) -> None:
        """Create what the pool needs, or check that it exists (when the pool is added)."""

    @abc.abstractmethod
    def destroy(self) -> None:
        """Release the pool (when it is removed); data of volumes is not deleted."""

    # ----- volumes ------------------------------------------------------------------

    def lock_for(self, vid: str) -> threading.RLock:
        """The lock that serialises operations on one vid, shared by all its objects."""
        with self._state.guard:
            return self._state.locks.setdefault(vid, threading.RLock())

    def set_importing(self, vid: str, active: bool) -> None:
        """Record that data is being imported into ``vid`` (between import_data and its end)."""
        with self._state.guard:
            if active:
                self._state.importing.add(vid)
            else:
                self._state.importing.discard(vid)

    def is_importing(self, vid: str) -> bool:
        with self._state.guard:
            return vid in self._state.importing

    def make_vid(self, vm_name: str, config: VolumeConfig, vm_class: str) -> str:
        """The vid of a new volume (``appvms/<vm>/<name>`` unless the driver says else)."""
        prefix = "vm-templates" if vm_class == "TemplateVM" else "appvms"
        vm = check_name(vm_name, "qube name")
        return f"{prefix}/{vm}/{check_name(config.name, 'volume name')}"

    def init_volume(self, vm_name: str, config: VolumeConfig, *,
                    vm_class: str = "AppVM") -> Volume:
        """The volume object of a qube's volume (its storage is made by ``create()``)."""
        if config.pool is not None and config.pool != self.name:
            raise StorageValueError(f"Pool {self.name!r}: the volume {config.name!r} is "
                                    f"configured for the pool {config.pool!r}")
        vid = check_vid(config.vid) if config.vid else self.make_vid(vm_name, config, vm_class)
        if config.source is not None:
            check_vid(config.source)
        volume = self.volume_class(self, vid, config)
        with self._state.guard:
            self._state.volumes[vid] = volume
        return volume

    def forget(self, volume: Volume) -> None:
        with self._state.guard:
            if self._state.volumes.get(volume.vid) is volume:
                del self._state.volumes[volume.vid]

    def known_volume(self, vid: str) -> Volume | None:
        with self._state.guard:
            return self._state.volumes.get(vid)

    def known_volumes(self) -> list[Volume]:
        with self._state.guard:
            return list(self._state.volumes.values())

    def get_volume(self, vid: str) -> Volume:
        """The volume ``vid``; StoragePoolException if the pool has no such volume."""
        volume = self.known_volume(vid)
        if volume is None:
            volume = self._discover(check_vid(vid))
        if volume is None:
            raise self.error(f"no volume {vid!r}")
        return volume

    def _discover(self, vid: str) -> Volume | None:
        """A handle on a volume stored in the pool but not initialised in this process."""
        return None

    def list_volumes(self) -> list[Volume]:
        """The volumes of the pool: those initialised here and those found in storage."""
        volumes = {v.vid: v for v in self.known_volumes()}
        for vid in self._stored_vids():
            if vid not in volumes:
                found = self._discover(vid)
                if found is not None:
                    volumes[vid] = found
        return [volumes[vid] for vid in sorted(volumes)]

    def _stored_vids(self) -> list[str]:
        return []

    # ----- space --------------------------------------------------------------------

    @property
    def size(self) -> int | None:
        """Pool size in bytes, None if unknown."""
        return None

    @property
    def usage(self) -> int | None:
        """Bytes used in the pool, None if unknown."""
        return None

    def usage_details(self) -> dict[str, int]:
        details: dict[str, int] = {}
        if (usage := self.usage) is not None:
            details["data_usage"] = usage
        if (size := self.size) is not None:
            details["data_size"] = size
        return details

    def info(self) -> dict[str, str]:
        """admin.pool.Info's pairs: the sorted settings, then size and usage if known."""
        result = dict(sorted(self.config.items()))
        if (size := self.size) is not None:
            result["size"] = str(size)
        if (usage := self.usage) is not None:
            result["usage"] = str(usage)
        return result

    # ----- qubes.xml ----------------------------------------------------------------

    def to_xml(self) -> Any:
        """The Qubes ``<pool driver=... name=... key=value .../>`` element."""
        return etree.Element("pool", self.config)

    @staticmethod
    def from_xml(element: Any) -> Pool:
        """The pool an element describes, with the driver registered under its name."""
        from septa.storage.registry import create_pool

        attrs = {str(k): str(v) for k, v in element.attrib.items()}
        driver = attrs.pop("driver", None)
        name = attrs.pop("name", None)
        if not driver or not name:
            raise StorageValueError("A <pool> element needs driver= and name=")
        return create_pool(driver, name, **attrs)
