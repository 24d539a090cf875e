"""The ``lvm_thin`` driver: volumes as thin volumes of an existing LVM thin pool.

Naming, as in Qubes: the vid is ``<volume_group>/vm-<qube>-<volume>``; that LV holds the
committed data of an origin volume (or the data of a running volatile volume); suffixes:

``-snap``
    what the qube runs on: a thin snapshot (``lvcreate -s``) of the committed LV
    (origin) or of the source's committed LV (snapshot volume);
``-<seconds>-back``
    revisions: at each commit the committed LV is renamed to this, then ``-snap`` is
    renamed to the plain name, and revisions beyond revisions_to_keep are removed;
``-import``
    data being imported or cloned, renamed over the plain name on success.

Thin snapshots are atomic and share blocks, so many qubes can run on snapshots of one
template while it commits new data. LVM rounds sizes up to its extent size.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from septa.storage.command import ToolError
from septa.storage.copy import Progress, copy_data
from septa.storage.fsutil import isodate
from septa.storage.lvm import LvInfo, LvmTool
from septa.storage.model import BlockDevice, VolumeConfig, check_name
from septa.storage.pool import Pool
from septa.storage.volume import Volume

_INTERNAL = re.compile(r"-(snap|import|\d+-back)$")
#: How long an ``lvs`` report is reused when this pool changed nothing meanwhile.
CACHE_SECONDS = 2.0


class ThinVolume(Volume):
    """A volume of a :class:`ThinPool`."""

    pool: ThinPool

    def __init__(self, pool: Pool, vid: str, config: VolumeConfig) -> None:
        super().__init__(pool, vid, config)
        vg, _, lv = vid.partition("/")
        if vg != self.pool.volume_group or not lv:
            raise self.error(f"the vid must be {self.pool.volume_group}/<name>")
        self._lv = lv
        self._snap = lv + "-snap"
        self._import = lv + "-import"
        self._back = re.compile(re.escape(lv) + r"-(\d+)-back$")

    # ----- reading state ------------------------------------------------------------

    def _lvs(self) -> dict[str, LvInfo]:
        return self.pool.lvs()

    def _revision_lvs(self, lvs: dict[str, LvInfo]) -> list[tuple[int, str]]:
        found = []
        for name in lvs:
            match = self._back.match(name)
            if match:
                found.append((int(match.group(1)), name))
        return sorted(found)

    def _current(self, lvs: dict[str, LvInfo]) -> str | None:
        """The LV with the committed data (the newest revision after an interrupted commit)."""
        if self._lv in lvs:
            return self._lv
        revisions = self._revision_lvs(lvs)
        return revisions[-1][1] if revisions else None

    def _device(self, lv: str) -> Path:
        return self.pool.lvm.device(self.pool.volume_group, lv)

    def revisions(self) -> dict[str, str]:
        if not self.save_on_stop:
            return {}
        return {f"{stamp}-back": isodate(stamp) for stamp, _ in self._revision_lvs(self._lvs())}

    @property
    def size(self) -> int:
        lvs = self._lvs()
        if (self.snap_on_start or self.save_on_stop) and self._snap in lvs:
            return lvs[self._snap].size
        current = self._current(lvs)
        if current is not None:
            return lvs[current].size
        if self.snap_on_start and not self._size:
            source = self._source_or_none()
            return source.size if source is not None else 0
        return self._size

    @property
    def usage(self) -> int:
        lvs = self._lvs()
        name = self._snap if self.snap_on_start else self._current(lvs)
        return lvs[name].usage if name in lvs else 0

    @property
    def path(self) -> str:
        return str(self._device(self._snap if self.snap_on_start else self._lv))

    def is_dirty(self) -> bool:
        return self.save_on_stop and not self.snapshots_disabled and self._snap in self._lvs()

    def is_outdated(self) -> bool:
        if not self.snap_on_start:
            return False
        lvs = self._lvs()
        if self._snap not in lvs:
            return False
        source = self._source_or_none()
        if not isinstance(source, ThinVolume):
            return False
        return lvs[self._snap].origin != source._current(lvs)

    def block_device(self) -> BlockDevice:
        if self.snap_on_start or (self.save_on_stop and not self.snapshots_disabled):
            lv = self._snap
        else:
            lv = self._lv
        return BlockDevice(str(self._device(lv)), self.name, "raw", not self.rw,
                           source_type="block", ephemeral=self.ephemeral)

    def _thin_source(self) -> ThinVolume:
        return self._same_pool_source(ThinVolume, holds_data=False)

    # ----- operations ---------------------------------------------------------------

    @property
    def _vg(self) -> str:
        return self.pool.volume_group

    def _remove_lv(self, lv: str, lvs: dict[str, LvInfo] | None = None) -> None:
        if lv in (lvs if lvs is not None else self._lvs()):
            self.pool.lvm.remove(self._vg, lv)

    def _create(self) -> None:
        if not self.save_on_stop:
            return
        lvs = self._lvs()
        if self._current(lvs) is not None:
            raise self.error("already exists")
        if self._size <= 0:
            raise self.error("has no size")
        self.pool.lvm.create_thin(self._vg, self.pool.thin_pool, self._lv, self._size)

    def _remove(self) -> None:
        lvs = self._lvs()
        for lv in (self._snap, self._import, self._lv):
            self._remove_lv(lv, lvs)
        for _, lv in self._revision_lvs(lvs):
            self.pool.lvm.remove(self._vg, lv)

    def _verify(self) -> None:
        if self.snap_on_start:
            self._thin_source()._verify()
        elif self.save_on_stop and self._current(self._lvs()) is None:
            raise self.error(f"missing logical volume {self._vg}/{self._lv}")

    def _start(self) -> None:
        lvm = self.pool.lvm
        lvs = self._lvs()
        if self.save_on_stop:
            self._remove_lv(self._import, lvs)  # an import never finished (daemon restarted)
            if self.snapshots_disabled:
                for _, lv in self._revision_lvs(lvs):
                    lvm.remove(self._vg, lv)
                if self._lv not in lvs:
                    raise self.error("has no data (the volume was not created)")
                lvm.activate(self._vg, self._lv)
            elif self._snap in lvs:
                lvm.activate(self._vg, self._snap)  # not committed after a crash: reuse
            else:
                current = self._current(lvs)
                if current is None:
                    raise self.error("has no data (the volume was not created)")
                lvm.snapshot(self._vg, current, self._snap)
        elif self.snap_on_start:
            source = self._thin_source()
            self._remove_lv(self._snap, lvs)
            with source._lock:
                current = source._current(self._lvs())
                if current is None:
                    raise self.error(f"its source {source.vid} has no data")
                lvm.snapshot(self._vg, current, self._snap)
            try:
                if self._size > self._lvs()[self._snap].size:
                    lvm.resize(self._vg, self._snap, self._size)
            except BaseException:
                lvm.remove(self._vg, self._snap)
                raise
        else:
            if self._size <= 0:
                raise self.error("has no size")
            self._remove_lv(self._lv, lvs)
            lvm.create_thin(self._vg, self.pool.thin_pool, self._lv, self._size)

    def _stop(self) -> None:
        lvs = self._lvs()
        if self.save_on_stop:
            if self.snapshots_disabled or self._snap not in lvs:
                return
            if self.rw:
                self._commit(self._snap, lvs)
            else:
                self.pool.lvm.remove(self._vg, self._snap)
        elif self.snap_on_start:
            self._remove_lv(self._snap, lvs)
        else:
            self._remove_lv(self._lv, lvs)

    def _back_name(self, lvs: dict[str, LvInfo]) -> str:
        stamp = int(time.time())
        taken = {s for s, _ in self._revision_lvs(lvs)}
        stamp = max([stamp, *(s + 1 for s in taken)])
        return f"{self._lv}-{stamp}-back"

    def _commit(self, new_lv: str, lvs: dict[str, LvInfo]) -> None:
        """Make ``new_lv`` the committed data; the old one becomes the newest revision."""
        lvm = self.pool.lvm
        if self._lv in lvs:
            if self.revisions_to_keep > 0:
                lvm.rename(self._vg, self._lv, self._back_name(lvs))
            else:
                lvm.remove(self._vg, self._lv)
        lvm.rename(self._vg, new_lv, self._lv)
        self._prune()

    def _prune(self) -> None:
        revisions = self._revision_lvs(self._lvs())
        excess = len(revisions) - max(self.revisions_to_keep, 0)
        for _, lv in revisions[: max(excess, 0)]:
            self.pool.lvm.remove(self._vg, lv)

    def _resize(self, size: int) -> None:
        lvs = self._lvs()
        if (self.snap_on_start or self.save_on_stop) and self._snap in lvs:
            target: str | None = self._snap  # the running data, committed at stop
        elif self._import in lvs:
            target = self._import
        elif self.save_on_stop:
            target = self._current(lvs)
        else:
            target = self._lv if self._lv in lvs and not self.snap_on_start else None
        if target is not None:
            self.pool.lvm.resize(self._vg, target, size)

    def _revert(self, revision: str) -> None:
        lvs = self._lvs()
        chosen = f"{self._lv}-{revision}"
        if chosen not in lvs:
            raise self.error(f"has no revision {revision!r}")
        lvm = self.pool.lvm
        if self._lv in lvs:
            lvm.rename(self._vg, self._lv, self._back_name(lvs))
        lvm.rename(self._vg, chosen, self._lv)
        self._prune()

    def _import_data(self, size: int) -> str:
        lvs = self._lvs()
        if self._current(lvs) is None:
            raise self.error("has no data (the volume was not created)")
        self._remove_lv(self._import, lvs)  # left over by an interrupted import
        self.pool.lvm.create_thin(self._vg, self.pool.thin_pool, self._import, size)
        return str(self._device(self._import))

    def _import_data_end(self, success: bool) -> None:
        lvs = self._lvs()
        if self._import not in lvs:
            raise self.error("no import in progress")
        if success:
            self._commit(self._import, lvs)
        else:
            self.pool.lvm.remove(self._vg, self._import)

    def _import_volume(self, src: Volume, progress: Progress | None) -> None:
        lvm = self.pool.lvm
        lvs = self._lvs()
        self._remove_lv(self._import, lvs)
        origin = src.source if src.snap_on_start else src
        if isinstance(origin, ThinVolume) and origin.pool.volume_group == self._vg \
                and origin.pool.thin_pool == self.pool.thin_pool and origin.save_on_stop:
            with origin._lock:
                current = origin._current(self._lvs())
                if current is None:
                    raise self.error(f"the volume {origin.vid} to copy has no data")
                lvm.snapshot(self._vg, current, self._import)
            if progress:
                progress(src.size, src.size)
        else:
            size = src.size
            lvm.create_thin(self._vg, self.pool.thin_pool, self._import, size)
            try:
                exported = src.export()
                try:
                    copy_data(Path(exported), self._device(self._import), size=size,
                              progress=progress, skip_zeroes=True)
                finally:
                    src.export_end(exported)
            except BaseException:
                lvm.remove(self._vg, self._import)
                raise
        try:
            self._commit(self._import, self._lvs())
        except BaseException:
            self._remove_lv(self._import)
            raise

    def _export(self, progress: Progress | None) -> str:
        if self.snap_on_start:
            return self._thin_source().export(progress)
        if not self.save_on_stop:
            raise self.error("a volatile volume has no data to export")
        with self._lock:
            current = self._current(self._lvs())
            if current is None:
                raise self.error("has no data (the volume was not created)")
            self.pool.lvm.activate(self._vg, current)
            return str(self._device(current))

    def _export_end(self, path: str) -> None:
        if self.snap_on_start:
            self._thin_source().export_end(path)


class ThinPool(Pool):
    """Thin volumes in the thin pool ``thin_pool`` of the volume group ``volume_group``."""

    driver = "lvm_thin"
    parameters = {"volume_group": None, "thin_pool": None}
    volume_class = ThinVolume

    def __init__(self, name: str, **config: str | int | bool) -> None:
        super().__init__(name, **config)
        self.volume_group = check_name(self.setting("volume_group"), "volume group")
        self.thin_pool = check_name(self.setting("thin_pool"), "thin pool")
        self._cache: tuple[float, dict[str, LvInfo]] | None = None
        self._lvm = LvmTool()
        self.lvm = self._lvm

    @property
    def lvm(self) -> LvmTool:
        """How LVM is called (replaceable, e.g. by a test double)."""
        return self._lvm

    @lvm.setter
    def lvm(self, tool: LvmTool) -> None:
        self._lvm = tool
        tool.on_change = self.invalidate
        self.invalidate()

    def invalidate(self) -> None:
        """Forget the cached ``lvs`` report (after a change)."""
        self._cache = None

    def make_vid(self, vm_name: str, config: VolumeConfig, vm_class: str) -> str:
        vm = check_name(vm_name, "qube name")
        return f"{self.volume_group}/vm-{vm}-{check_name(config.name, 'volume name')}"

    def lvs(self) -> dict[str, LvInfo]:
        """The LVs of the volume group (a report at most CACHE_SECONDS old, or newer than
        this pool's last change)."""
        cached = self._cache
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            report = self.lvm.lvs(self.volume_group)
        except ToolError as exc:
            raise self.error(f"cannot list the volume group {self.volume_group}: {exc}") from exc
        self._cache = (time.monotonic(), report)
        return report

    def _pool_info(self) -> LvInfo | None:
        return self.lvs().get(self.thin_pool)

    def setup(self) -> None:
        info = self._pool_info()
        if info is None:
            raise self.error(f"thin pool {self.volume_group}/{self.thin_pool} does not exist")
        if not info.is_thin_pool:
            raise self.error(f"{self.volume_group}/{self.thin_pool} is not a thin pool")

    def destroy(self) -> None:
        return None

    def _stored_vids(self) -> list[str]:
        names = set()
        for name, info in self.lvs().items():
            if info.pool_lv != self.thin_pool:
                continue
            base = _INTERNAL.sub("", name)
            names.add(base)
        return sorted(f"{self.volume_group}/{name}" for name in names)

    def _discover(self, vid: str) -> Volume | None:
        vg, _, lv = vid.partition("/")
        if vg != self.volume_group or not lv:
            return None
        config = VolumeConfig(name=lv, rw=True, save_on_stop=True)
        volume = ThinVolume(self, vid, config)
        lvs = self.lvs()
        current = volume._current(lvs)
        if current is None or lvs[current].pool_lv != self.thin_pool:
            return None
        return volume

    @property
    def size(self) -> int | None:
        info = self._pool_info()
        return None if info is None else info.size

    @property
    def usage(self) -> int | None:
        info = self._pool_info()
        return None if info is None else info.usage

    def usage_details(self) -> dict[str, int]:
        info = self._pool_info()
        if info is None:
            return {}
        details = {"data_size": info.size, "data_usage": info.usage}
        if info.metadata_size is not None:
            details["metadata_size"] = info.metadata_size
        if info.metadata_usage is not None:
            details["metadata_usage"] = info.metadata_usage
        return details
