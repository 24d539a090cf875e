"""The ``file-reflink`` driver: raw image files, copy-on-write by sharing blocks (FICLONE).

Needs a filesystem that can reflink (xfs made with ``reflink=1``, btrfs); ``setup()``
checks it, unless the pool is configured with ``setup_check=False`` (then copies are
sparse full copies). Layout, as in Qubes, for vid ``appvms/work/private``:

``private.img``
    the committed data of an origin volume (for a snapshot: a hard link to the source's
    committed file at start, to tell whether the source changed since);
``private-dirty.img``
    what the qube runs on: a reflink of the committed data (origin, snapshot) or a new
    sparse file (volatile);
``private.img.<n>@<time>Z``
    revisions: at each commit the committed file gets this second name (a hard link,
    no copy) before the running file is renamed over ``private.img``;
``private-import.img``, ``private-export.<id>.img``
    data being imported, and the reflink copies handed out by ``export()``.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from septa.storage import fsutil
from septa.storage.copy import Progress, clone_or_copy, reflink_supported
from septa.storage.model import BlockDevice, VolumeConfig, parse_bool
from septa.storage.pool import Pool
from septa.storage.volume import Volume

_SUBDIRS = ("appvms", "vm-templates")
_REVISION = re.compile(r"^\.(\d+)@(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z$")
_NOT_CLEAN = re.compile(r"(-dirty|-import|-export\.[0-9a-f]+)\.img$")


class ReflinkVolume(Volume):
    """A volume of a :class:`ReflinkPool`."""

    pool: ReflinkPool

    def __init__(self, pool: Pool, vid: str, config: VolumeConfig) -> None:
        super().__init__(pool, vid, config)
        base = Path(self.pool.dir_path) / vid
        self._clean = base.with_name(base.name + ".img")
        self._dirty = base.with_name(base.name + "-dirty.img")
        self._import = base.with_name(base.name + "-import.img")

    # ----- reading state ------------------------------------------------------------

    def _revision_path(self, revision: str, timestamp: str) -> Path:
        return self._clean.with_name(f"{self._clean.name}.{revision}@{timestamp}Z")

    def revisions(self) -> dict[str, str]:
        if not self.save_on_stop:
            return {}
        prefix = self._clean.name
        found = []
        try:
            entries = list(self._clean.parent.iterdir())
        except FileNotFoundError:
            return {}
        for entry in entries:
            if entry.name.startswith(prefix):
                match = _REVISION.match(entry.name[len(prefix):])
                if match:
                    found.append((int(match.group(1)), match.group(2)))
        return {str(n): stamp for n, stamp in sorted(found)}

    @property
    def size(self) -> int:
        for path in (self._dirty, self._clean):
            try:
                return path.stat().st_size
            except FileNotFoundError:
                continue
        if self.snap_on_start and not self._size:
            source = self._source_or_none()
            return source.size if source is not None else 0
        return self._size

    @property
    def usage(self) -> int:
        for path in (self._dirty, self._clean):
            if path.exists():
                return fsutil.disk_usage(path)
        return 0

    @property
    def path(self) -> str:
        return str(self._clean if self.save_on_stop else self._dirty)

    def is_dirty(self) -> bool:
        return self.save_on_stop and self._dirty.exists()

    def is_outdated(self) -> bool:
        if not self.snap_on_start or not self._dirty.exists():
            return False
        source = self._source_or_none()
        if not isinstance(source, ReflinkVolume):
            return False
        return not fsutil.same_file(self._clean, source._clean)

    def block_device(self) -> BlockDevice:
        return BlockDevice(str(self._dirty), self.name, "raw", not self.rw,
                           ephemeral=self.ephemeral)

    def _reflink_source(self) -> ReflinkVolume:
        return self._same_pool_source(ReflinkVolume)

    # ----- life cycle ---------------------------------------------------------------

    def _create(self) -> None:
        if not self.save_on_stop:
            return
        if self._clean.exists():
            raise self.error("already exists")
        if self._size <= 0:
            raise self.error("has no size")
        fsutil.create_sparse(self._clean, self._size)

    def _remove(self) -> None:
        for revision, stamp in self.revisions().items():
            fsutil.remove(self._revision_path(revision, stamp))
        for path in (self._clean, self._dirty, self._import):
            fsutil.remove(path)
        for leftover in self._clean.parent.glob(f"{self._clean.stem}-export.*.img"):
            fsutil.remove(leftover)
        fsutil.remove_stale_tmp(self._clean.parent)
        fsutil.remove_empty_dirs(self._clean.parent,
                                 Path(self.pool.dir_path, self.vid.split("/")[0]))

    def _verify(self) -> None:
        clean = self._reflink_source()._clean if self.snap_on_start else \
            self._clean if self.save_on_stop else None
        if clean is not None and not clean.exists():
            raise self.error(f"missing image file {clean}")

    def _copy_to(self, src: Path, dst: Path, size: int | None = None,
                 progress: Progress | None = None) -> None:
        """Put a reflink (or sparse copy) of ``src`` at ``dst`` atomically."""
        tmp = fsutil.tmp_name(dst)
        try:
            clone_or_copy(src, tmp, size=size, progress=progress)
            fsutil.fsync_file(tmp)
            fsutil.rename(tmp, dst)
        finally:
            fsutil.remove(tmp)

    def _start(self) -> None:
        self._clean.parent.mkdir(parents=True, exist_ok=True)
        fsutil.remove_stale_tmp(self._clean.parent)
        if self.save_on_stop:
            fsutil.remove(self._import)  # an import never finished (the daemon restarted)
            if self.is_dirty():
                return  # not committed after a crash: the qube goes on with its data
            if not self._clean.exists():
                raise self.error("has no data (the volume was not created)")
            if self.snapshots_disabled:
                self._prune(0)
                fsutil.rename(self._clean, self._dirty)
            else:
                self._copy_to(self._clean, self._dirty)
        elif self.snap_on_start:
            source = self._reflink_source()
            self._discard()
            with source._lock:
                if not source._clean.exists():
                    raise self.error(f"its source {source.vid} has no data")
                fsutil.hardlink(source._clean, self._clean)
            try:
                size = max(self._size, self._clean.stat().st_size)
                self._copy_to(self._clean, self._dirty, size=size)
            except BaseException:
                self._discard()
                raise
        else:
            if self._size <= 0:
                raise self.error("has no size")
            fsutil.create_sparse(self._dirty, self._size)

    def _discard(self) -> None:
        fsutil.remove(self._dirty)
        if self.snap_on_start:
            fsutil.remove(self._clean)

    def _stop(self) -> None:
        if self.save_on_stop:
            if not self._dirty.exists():
                return
            if self.snapshots_disabled:
                fsutil.fsync_file(self._dirty)
                fsutil.rename(self._dirty, self._clean)
            elif self.rw:
                self._commit(self._dirty)
            else:
                fsutil.remove(self._dirty)
        else:
            self._discard()

    # ----- commits ------------------------------------------------------------------

    def _add_revision(self) -> None:
        """Give the committed file a revision name too (kept when a new file replaces it)."""
        if self.revisions_to_keep <= 0 or not self._clean.exists():
            return
        numbers = [int(n) for n in self.revisions()]
        stamp = fsutil.isodate(self._clean.stat().st_mtime)
        os.link(self._clean, self._revision_path(str(max(numbers, default=0) + 1), stamp))

    def _prune(self, keep: int | None = None) -> None:
        keep = max(self.revisions_to_keep, 0) if keep is None else keep
        revisions = list(self.revisions().items())
        for revision, stamp in revisions[: max(len(revisions) - keep, 0)]:
            fsutil.remove(self._revision_path(revision, stamp))

    def _commit(self, new_data: Path) -> None:
        fsutil.fsync_file(new_data)
        self._add_revision()
        fsutil.rename(new_data, self._clean)
        self._prune()

    # ----- resize, revert -----------------------------------------------------------

    def _resize(self, size: int) -> None:
        if self._dirty.exists():
            fsutil.resize_file(self._dirty, size)  # the hypervisor must grow the disk live
        elif self.save_on_stop and self._clean.exists():
            self._copy_to(self._clean, self._clean, size=size)

    def _revert(self, revision: str) -> None:
        chosen = self._revision_path(revision, self.revisions()[revision])
        self._add_revision()
        fsutil.rename(chosen, self._clean)
        self._prune()

    # ----- import and export --------------------------------------------------------

    def _import_data(self, size: int) -> str:
        if not self._clean.exists():
            raise self.error("has no data (the volume was not created)")
        fsutil.create_sparse(self._import, size)
        return str(self._import)

    def _import_data_end(self, success: bool) -> None:
        if not self._import.exists():
            raise self.error("no import in progress")
        if success:
            self._commit(self._import)
        else:
            fsutil.remove(self._import)

    def _import_volume(self, src: Volume, progress: Progress | None) -> None:
        tmp = fsutil.tmp_name(self._import)
        try:
            exported = src.export()
            try:
                clone_or_copy(Path(exported), tmp, size=src.size, progress=progress)
            finally:
                src.export_end(exported)
            self._commit(tmp)
        finally:
            fsutil.remove(tmp)

    def _export(self, progress: Progress | None) -> str:
        if self.snap_on_start:
            return self._reflink_source().export(progress)
        if not self.save_on_stop:
            raise self.error("a volatile volume has no data to export")
        with self._lock:
            if not self._clean.exists():
                raise self.error("has no data (the volume was not created)")
            out = self._clean.with_name(f"{self._clean.stem}-export.{secrets.token_hex(4)}.img")
            self._copy_to(self._clean, out, progress=progress)
        return str(out)

    def _export_end(self, path: str) -> None:
        if self.snap_on_start:
            self._reflink_source().export_end(path)
            return
        exported = Path(path)
        if exported.parent != self._clean.parent or \
                not exported.name.startswith(f"{self._clean.stem}-export."):
            raise self.error(f"{path} is not an export of this volume")
        fsutil.remove(exported)


class ReflinkPool(Pool):
    """Raw image files under ``dir_path`` on a filesystem that can reflink."""

    driver = "file-reflink"
    parameters = {"dir_path": None, "setup_check": "True"}
    volume_class = ReflinkVolume

    def __init__(self, name: str, **config: str | int | bool) -> None:
        super().__init__(name, **config)
        self.dir_path = os.path.normpath(os.path.abspath(self.setting("dir_path")))
        self._settings["dir_path"] = self.dir_path
        self.setup_check = parse_bool(self.setting("setup_check"), "setup_check")

    def setup(self) -> None:
        root = Path(self.dir_path)
        created = not root.exists()
        try:
            root.mkdir(parents=True, exist_ok=True)
            if self.setup_check and not reflink_supported(root):
                if created:
                    root.rmdir()
                raise self.error(f"the filesystem of {self.dir_path} cannot make reflink "
                                 "copies (use xfs with reflink=1 or btrfs, or the 'file' "
                                 "driver; setup_check=False accepts slow full copies)")
            for sub in _SUBDIRS:
                (root / sub).mkdir(exist_ok=True)
        except OSError as exc:
            raise self.error(f"cannot set up {self.dir_path}: {exc}") from exc

    def destroy(self) -> None:
        for sub in _SUBDIRS:
            try:
                os.rmdir(Path(self.dir_path, sub))
            except OSError:
                pass

    def _stored_vids(self) -> list[str]:
        root = Path(self.dir_path)
        vids = []
        for sub in _SUBDIRS:
            for image in root.glob(f"{sub}/*/*.img"):
                if image.name.startswith(".") or _NOT_CLEAN.search(image.name):
                    continue
                vids.append(image.relative_to(root).as_posix()[: -len(".img")])
        return sorted(vids)

    def _discover(self, vid: str) -> Volume | None:
        image = Path(self.dir_path, vid + ".img")
        if not image.is_file():
            return None
        config = VolumeConfig(name=vid.rsplit("/", 1)[-1], rw=True, save_on_stop=True,
                              size=image.stat().st_size)
        return ReflinkVolume(self, vid, config)

    @property
    def size(self) -> int | None:
        return fsutil.fs_size(self.dir_path)

    @property
    def usage(self) -> int | None:
        return fsutil.fs_usage(self.dir_path)
