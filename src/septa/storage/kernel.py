"""The ``linux-kernel`` driver: a read-only pool of kernels for direct kernel boot.

``dir_path`` (default ``<qubes_base>/vm-kernels``) holds one directory per kernel
version with ``vmlinuz`` and ``initramfs`` (and optionally ``modules.img``). A qube's
``kernel`` volume has the version as its vid (empty: no kernel); it attaches no disk,
the hypervisor boots the files of :meth:`KernelPool.kernel_files`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import ClassVar

from septa import paths
from septa.storage import fsutil
from septa.storage.copy import Progress
from septa.storage.model import BlockDevice, StorageValueError, VolumeConfig, check_name
from septa.storage.pool import Pool
from septa.storage.volume import Volume

VMLINUZ = "vmlinuz"
INITRAMFS = "initramfs"
MODULES = "modules.img"


class KernelVolume(Volume):
    """The kernel of a qube: the files of one kernel version, never written."""

    pool: KernelPool
    max_revisions = 0

    @property
    def kernel_dir(self) -> Path | None:
        return Path(self.pool.dir_path, self.vid) if self.vid else None

    def _file(self, name: str) -> Path | None:
        where = self.kernel_dir
        return None if where is None else where / name

    @property
    def vmlinuz(self) -> Path | None:
        return self._file(VMLINUZ)

    @property
    def initramfs(self) -> Path | None:
        return self._file(INITRAMFS)

    @property
    def modules(self) -> Path | None:
        """The modules image, if this kernel has one."""
        path = self._file(MODULES)
        return path if path is not None and path.exists() else None

    @property
    def size(self) -> int:
        modules = self.modules
        return modules.stat().st_size if modules is not None else 0

    @property
    def usage(self) -> int:
        where = self.kernel_dir
        if where is None or not where.is_dir():
            return 0
        return sum(fsutil.disk_usage(p) for p in where.iterdir())

    @property
    def path(self) -> str:
        where = self.kernel_dir
        return "" if where is None else str(where)

    @property
    def ephemeral(self) -> bool:
        return False

    @ephemeral.setter
    def ephemeral(self, value: bool) -> None:
        if value:
            raise StorageValueError(f"Volume {self}: a kernel volume cannot be ephemeral")

    def revisions(self) -> dict[str, str]:
        return {}

    def is_running(self) -> bool:
        """Never: one kernel serves many qubes at once, and nothing is prepared for a run."""
        return False

    def start(self) -> None:
        """Check that the kernel's files are there."""
        with self._operation("start", lock=False):
            self._verify()

    def stop(self) -> None:
        return None

    def block_device(self) -> BlockDevice | None:
        return None

    def _create(self) -> None:
        return None

    def _remove(self) -> None:
        return None

    def _verify(self) -> None:
        if self.vid:
            self.pool.kernel_files(self.vid)

    def _start(self) -> None:
        self._verify()  # not called: start() is overridden

    def _stop(self) -> None:
        return None

    def _resize(self, size: int) -> None:
        raise self.error("a kernel volume cannot be resized")

    def _revert(self, revision: str) -> None:
        raise self.error("a kernel volume has no revisions")

    def _import_data(self, size: int) -> str:
        raise self.error("kernels are added with the pool, not imported")

    def _import_data_end(self, success: bool) -> None:
        raise self.error("no import in progress")

    def _import_volume(self, src: Volume, progress: Progress | None) -> None:
        return None

    def _export(self, progress: Progress | None) -> str:
        modules = self.modules
        if modules is None:
            raise self.error("has no modules image to export")
        return str(modules)

    def _export_end(self, path: str) -> None:
        return None


class KernelPool(Pool):
    """Kernels for direct boot, one directory per version."""

    driver = "linux-kernel"
    parameters = {"dir_path": ""}
    common_parameters: ClassVar[dict[str, str | None]] = {}
    volume_class = KernelVolume

    def __init__(self, name: str, **config: str | int | bool) -> None:
        super().__init__(name, **config)
        where = self.setting("dir_path") or str(paths.current().qubes_base / "vm-kernels")
        self.dir_path = os.path.normpath(os.path.abspath(where))
        self._settings["dir_path"] = self.dir_path

    def setup(self) -> None:
        try:
            Path(self.dir_path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.error(f"cannot create {self.dir_path}: {exc}") from exc

    def destroy(self) -> None:
        return None

    def init_volume(self, vm_name: str, config: VolumeConfig, *,
                    vm_class: str = "AppVM") -> Volume:
        """The kernel volume of a qube; ``config.vid`` is the kernel version (or empty)."""
        if config.pool is not None and config.pool != self.name:
            raise StorageValueError(f"Pool {self.name!r}: the volume {config.name!r} is "
                                    f"configured for the pool {config.pool!r}")
        if config.rw or config.save_on_stop:
            raise StorageValueError(f"Pool {self.name!r}: kernel volumes are read-only and "
                                    "never saved")
        version = config.vid or ""
        if version:
            check_name(version, "kernel version")
        fixed = config.copy(vid=version, pool=self.name, rw=False, snap_on_start=False,
                            source=None, revisions_to_keep=0, size=None)
        volume = KernelVolume(self, version, fixed)
        if version:
            with self._state.guard:
                self._state.volumes.setdefault(version, volume)
        return volume

    def _stored_vids(self) -> list[str]:
        return self.kernel_versions()

    def _discover(self, vid: str) -> Volume | None:
        if vid not in self.kernel_versions():
            return None
        return KernelVolume(self, vid, VolumeConfig(name=vid, vid=vid, revisions_to_keep=0))

    def kernel_versions(self) -> list[str]:
        """The versions that have at least a ``vmlinuz``."""
        try:
            entries = list(Path(self.dir_path).iterdir())
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries
                      if not e.name.startswith(".") and (e / VMLINUZ).is_file())

    def kernel_files(self, version: str) -> tuple[Path, Path]:
        """``(vmlinuz, initramfs)`` of a kernel version."""
        where = Path(self.dir_path, check_name(version, "kernel version"))
        vmlinuz, initramfs = where / VMLINUZ, where / INITRAMFS
        for needed in (vmlinuz, initramfs):
            if not needed.is_file():
                raise self.error(f"kernel {version}: missing file {needed}")
        return vmlinuz, initramfs

    def add_kernel(self, version: str, vmlinuz: Path | str, initrd: Path | str,
                   modules: Path | str | None = None, *, replace: bool = False) -> None:
        """Copy a kernel into the pool as ``version`` (all files appear at once, or none)."""
        check_name(version, "kernel version")
        target = Path(self.dir_path, version)
        if target.exists() and not replace:
            raise self.error(f"kernel {version} already exists")
        Path(self.dir_path).mkdir(parents=True, exist_ok=True)
        staging = fsutil.tmp_name(target)
        try:
            staging.mkdir()
            files = {VMLINUZ: vmlinuz, INITRAMFS: initrd}
            if modules is not None:
                files[MODULES] = modules
            for name, src in files.items():
                shutil.copyfile(src, staging / name)
                os.chmod(staging / name, 0o644)
            staging.chmod(0o755)
            if target.exists():
                old = fsutil.tmp_name(target)
                os.rename(target, old)
                os.rename(staging, target)
                shutil.rmtree(old)
            else:
                os.rename(staging, target)
            fsutil.fsync_dir(target.parent)
        except OSError as exc:
            raise self.error(f"cannot add kernel {version}: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def remove_kernel(self, version: str) -> None:
        target = Path(self.dir_path, check_name(version, "kernel version"))
        if not target.is_dir():
            raise self.error(f"no kernel {version}")
        try:
            shutil.rmtree(target)
        except OSError as exc:
            raise self.error(f"cannot remove kernel {version}: {exc}") from exc
