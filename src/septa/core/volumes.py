"""The volumes of each qube: their configuration (qubes.xml ``<volume-config>``), the pools
that hold them, and the steps of their life (create, start, stop, remove).

Blocking storage work is done by the callers in an executor; this module only decides
which volume lives where and in what order things happen.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from lxml import etree

from septa.core.errors import QubesValueError, StoragePoolException
from septa.storage import BlockDevice, Pool, Volume, VolumeConfig, default_volume_configs

if TYPE_CHECKING:
    from septa.core.vm import BaseVM

log = logging.getLogger(__name__)
VOLUME_ORDER = ("root", "private", "volatile", "kernel")
DISK_TARGETS = {"root": "vda", "private": "vdb", "volatile": "vdc"}


class QubeStorage:
    """The volumes of one qube."""

    def __init__(self, vm: BaseVM) -> None:
        self.vm = vm
        self.configs: dict[str, VolumeConfig] = {}
        self._volumes: dict[str, Volume] = {}

    # ----- configuration ------------------------------------------------------------

    def load_xml(self, element: Any) -> None:
        self.configs = {}
        for node in element.iterfind("volume"):
            config = VolumeConfig.from_xml(node)
            self.configs[config.name] = config

    def to_xml(self) -> Any:
        node = etree.Element("volume-config")
        for name in sorted(self.configs, key=_order):
            node.append(self.configs[name].to_xml())
        return node

    def plan(self, pools: dict[str, str] | None = None, pool: str | None = None) -> None:
        """The volumes of a new qube: its class's defaults, pools chosen as asked.

        ``pools`` names a pool per volume; ``pool`` one for every volume that is not a
        snapshot of the template's (those stay beside their source) nor the kernel.
        """
        template = self.vm.template_or_none()
        template_configs = template.storage.configs if template is not None else None
        configs = default_volume_configs(type(self.vm).__name__, template_configs)
        for name, config in configs.items():
            wanted = (pools or {}).get(name)
            if config.snap_on_start and config.pool is not None:
                if wanted not in (None, config.pool):
                    raise QubesValueError(f"The {name} volume is a snapshot of the template's "
                                          f"and must stay in its pool {config.pool!r}")
            else:
                if wanted is None and name != "kernel":
                    wanted = pool
                config = config.copy(pool=wanted or self.vm.app.get(f"default_pool_{name}"))
            if config.pool not in self.vm.app.pools:
                raise QubesValueError(f"No such storage pool: {config.pool!r}")
            configs[name] = config
        self.configs = configs
        self._volumes = {}
        self.volumes  # noqa: B018 - assigns the vids now, so that the configs are complete

    # ----- volume objects -----------------------------------------------------------

    def pool_of(self, name: str) -> Pool:
        pool = self.configs[name].pool
        try:
            return self.vm.app.pools[str(pool)]
        except KeyError:
            raise StoragePoolException(f"{self.vm.name}: no such pool {pool!r} for its "
                                       f"{name} volume") from None

    @property
    def volumes(self) -> dict[str, Volume]:
        kernel = self.vm.get_or("kernel", "") or ""
        for name in sorted(self.configs, key=_order):
            cached = self._volumes.get(name)
            if cached is None or (name == "kernel" and cached.vid != kernel):
                self._volumes[name] = self._init(name)
        return {name: self._volumes[name] for name in sorted(self._volumes, key=_order)}

    def _init(self, name: str) -> Volume:
        config = self.configs[name]
        if name == "kernel":
            config = config.copy(vid=self.vm.get_or("kernel", "") or None)
        volume = self.pool_of(name).init_volume(self.vm.name, config,
                                                vm_class=type(self.vm).__name__)
        if name != "kernel" and self.configs[name].vid != volume.vid:
            self.configs[name] = self.configs[name].copy(vid=volume.vid)
            self.vm.fire_event("domain-volume-config", volume=name)
        return volume

    def __getitem__(self, name: str) -> Volume:
        if name not in self.configs:
            raise StoragePoolException(f"{self.vm.name} has no volume {name!r}")
        return self.volumes[name]

    # ----- life (blocking: run these in an executor) --------------------------------

    def create(self) -> None:
        """Create every volume; on failure remove what was made and re-raise."""
        made: list[Volume] = []
        try:
            for name, volume in self.volumes.items():
                if name == "kernel":
                    continue
                volume.create()
                made.append(volume)
        except Exception:
            for volume in reversed(made):
                with contextlib.suppress(Exception):
                    volume.remove()
            raise

    def remove(self) -> None:
        for name, volume in self.volumes.items():
            if name == "kernel":
                continue
            try:
                volume.remove()
            except StoragePoolException as exc:
                log.warning("%s: removing volume %s: %s", self.vm.name, name, exc)

    def start(self) -> None:
        """Prepare every volume for a run; on failure stop those already started."""
        started: list[Volume] = []
        try:
            for name, volume in self.volumes.items():
                if name == "kernel":
                    continue
                volume.start()
                started.append(volume)
        except Exception:
            for volume in reversed(started):
                with contextlib.suppress(Exception):
                    volume.stop()
            raise

    def stop(self) -> None:
        errors = []
        for name, volume in self.volumes.items():
            if name == "kernel" or not volume.is_running():
                continue
            try:
                volume.stop()
            except StoragePoolException as exc:
                errors.append(str(exc))
        if errors:
            raise StoragePoolException("; ".join(errors))

    def disks(self) -> list[tuple[str, BlockDevice]]:
        """(guest device, block device) of every attached volume, in boot order."""
        result = []
        for name, target in DISK_TARGETS.items():
            if name in self.configs:
                device = self[name].block_device()
                if device is not None:
                    result.append((target, device))
        return result


def _order(name: str) -> int:
    return VOLUME_ORDER.index(name) if name in VOLUME_ORDER else len(VOLUME_ORDER)
