"""The ``file`` driver: volumes as image files in a directory, copy-on-write with qcow2.

Layout under ``dir_path`` (as in Qubes: ``appvms/<qube>/``, ``vm-templates/<qube>/``), for a
volume with vid ``appvms/work/private``:

``appvms/work/private.img``
    a symbolic link to the current data of an origin volume (informational);
``appvms/work/private.d/``
    the volume's state: ``meta.json`` and the layers ``<id>.img`` of an origin volume
    (see :mod:`septa.storage.file_layers`), ``dirty.qcow2`` (the running layer),
    ``base/`` (a snapshot's pinned source chain), ``volatile.raw``, ``import.raw``,
    ``export-*/``.

How the kinds of volume work:

* origin: at start a qcow2 overlay ``dirty.qcow2`` on the current layer takes the
  qube's writes. At stop it becomes a new layer and the current one; the previous
  current layer becomes a revision. Revisions beyond ``revisions_to_keep`` are dropped,
  and a dropped layer with a single child is merged by committing the child into it
  (cost: the size of the child's changes) and pointing everything at the merged file.
* snapshot: at start every layer file of the source's current chain is hard-linked into
  ``base/`` (a *pin*), and an overlay on the pinned top takes the qube's writes; it is
  deleted at stop. A layer with more than one link is never modified, so the source can
  commit, revert and drop revisions while any number of qubes run on their snapshots;
  merging of pinned layers waits until they are released. The volume is outdated when
  the source's current layer is no longer its pinned top.
* volatile: a new sparse raw file at each start, deleted at stop.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from septa.core.errors import StoragePoolException
from septa.storage import fsutil, qemu_img
from septa.storage.copy import Progress, copy_data
from septa.storage.file_layers import Layer, Meta, Revision
from septa.storage.model import BackingFile, BlockDevice, VolumeConfig
from septa.storage.pool import Pool
from septa.storage.volume import Volume

_LAYER_FILE = re.compile(r"^(\d+)\.img$")
_SUBDIRS = ("appvms", "vm-templates")


class FileVolume(Volume):
    """A volume of a :class:`FilePool`."""

    pool: FilePool

    def __init__(self, pool: Pool, vid: str, config: VolumeConfig) -> None:
        super().__init__(pool, vid, config)
        base = Path(self.pool.dir_path) / vid
        self._dir = base.with_name(base.name + ".d")
        self._link = base.with_name(base.name + ".img")

    # ----- names --------------------------------------------------------------------

    @property
    def _meta_path(self) -> Path:
        return self._dir / "meta.json"

    @property
    def _dirty(self) -> Path:
        return self._dir / "dirty.qcow2"

    @property
    def _pins(self) -> Path:
        return self._dir / "base"

    @property
    def _volatile(self) -> Path:
        return self._dir / "volatile.raw"

    @property
    def _import(self) -> Path:
        return self._dir / "import.raw"

    def _layer_path(self, layer_id: str) -> Path:
        return self._dir / f"{layer_id}.img"

    @property
    def _origin(self) -> bool:
        return self.save_on_stop

    # ----- metadata -----------------------------------------------------------------

    def _has_data(self) -> bool:
        return self._meta_path.exists()

    def _load(self) -> Meta:
        try:
            return Meta.from_json(fsutil.read_json(self._meta_path))
        except FileNotFoundError:
            raise self.error("has no data (the volume was not created)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise self.error(f"damaged metadata {self._meta_path}: {exc}") from exc

    def _save(self, meta: Meta) -> None:
        fsutil.write_json(self._meta_path, meta.to_json())
        fsutil.symlink(f"{self._dir.name}/{meta.current}.img", self._link)

    def _chain_files(self, meta: Meta, layer_id: str) -> list[BackingFile]:
        return [BackingFile(str(self._layer_path(lid)), meta.layers[lid].format)
                for lid in meta.chain(layer_id)]

    def _pinned(self, layer_id: str) -> bool:
        return fsutil.link_count(self._layer_path(layer_id)) > 1

    # ----- reading state ------------------------------------------------------------

    @property
    def size(self) -> int:
        if self._origin and self._has_data():
            return self._load().size
        if self.snap_on_start and not self._size:
            source = self._source_or_none()
            return source.size if source is not None else 0
        return self._size

    @property
    def usage(self) -> int:
        if self._origin:
            try:
                return sum(fsutil.disk_usage(p) for p in self._dir.iterdir() if p.is_file())
            except FileNotFoundError:
                return 0
        if self.snap_on_start:
            return fsutil.disk_usage(self._dirty)
        return fsutil.disk_usage(self._volatile)

    @property
    def path(self) -> str:
        if self._origin:
            return str(self._link)
        if self.snap_on_start:
            return str(self._dirty)
        return str(self._volatile)

    def is_dirty(self) -> bool:
        if not self._origin or self.snapshots_disabled or not self._dirty.exists():
            return False
        try:
            meta = self._load()
        except StoragePoolException:  # no data: a dirty layer cannot be committed anyway
            return True
        return not fsutil.same_file(self._dirty, self._layer_path(meta.current))

    def is_outdated(self) -> bool:
        source = self._source_or_none() if self.snap_on_start else None
        if not isinstance(source, FileVolume) or not (self._pins / "0.img").exists():
            return False
        try:
            meta = source._load()
        except StoragePoolException:  # a source without data cannot be newer
            return False
        return not fsutil.same_file(self._pins / "0.img", source._layer_path(meta.current))

    def revisions(self) -> dict[str, str]:
        if not self._origin or not self._has_data():
            return {}
        return {r.id: r.timestamp for r in self._load().revisions}

    def block_device(self) -> BlockDevice:
        readonly = not self.rw
        if self._origin:
            backing: tuple[BackingFile, ...] = ()
            if self._has_data():
                meta = self._load()
                chain = self._chain_files(meta, meta.current)
                if self.snapshots_disabled:
                    top = chain[0]
                    return BlockDevice(top.path, self.name, top.format, readonly,
                                       backing=tuple(chain[1:]))
                backing = tuple(chain)
            return BlockDevice(str(self._dirty), self.name, "qcow2", readonly, backing=backing)
        if self.snap_on_start:
            return BlockDevice(str(self._dirty), self.name, "qcow2", readonly,
                               backing=self._snapshot_chain())
        return BlockDevice(str(self._volatile), self.name, "raw", readonly,
                           ephemeral=self.ephemeral)

    def _snapshot_chain(self) -> tuple[BackingFile, ...]:
        try:
            pinned = fsutil.read_json(self._pins / "chain.json")
            return tuple(BackingFile(str(self._pins / e["file"]), e["format"]) for e in pinned)
        except FileNotFoundError:
            source = self._file_source()
            meta = source._load()
            return tuple(source._chain_files(meta, meta.current))

    def _file_source(self) -> FileVolume:
        return self._same_pool_source(FileVolume)

    # ----- life cycle ---------------------------------------------------------------

    def _create(self) -> None:
        if not self._origin:
            return
        if self._has_data():
            raise self.error("already exists")
        if self._size <= 0:
            raise self.error("has no size")
        created = not self._dir.exists()
        self._dir.mkdir(parents=True, exist_ok=True)
        try:
            meta = Meta(size=self._size, current="1",
                        layers={"1": Layer("raw", None, time.time())}, counter=1)
            fsutil.create_sparse(self._layer_path("1"), self._size)
            self._save(meta)
        except BaseException:
            if created:
                fsutil.remove_tree(self._dir)
            raise

    def _remove(self) -> None:
        fsutil.remove_tree(self._dir)
        fsutil.remove(self._link)
        fsutil.remove_empty_dirs(self._dir.parent,
                                 Path(self.pool.dir_path, self.vid.split("/")[0]))

    def _verify(self) -> None:
        if self._origin:
            meta = self._load()
            for lid in meta.referenced():
                for entry in self._chain_files(meta, lid):
                    if not os.path.exists(entry.path):
                        raise self.error(f"missing image file {entry.path}")
        elif self.snap_on_start:
            self._file_source()._verify()

    def _start(self) -> None:
        if self._origin:
            self._start_origin()
        elif self.snap_on_start:
            self._start_snapshot()
        else:
            if self._size <= 0:
                raise self.error("has no size")
            self._dir.mkdir(parents=True, exist_ok=True)
            fsutil.create_sparse(self._volatile, self._size)

    def _start_origin(self) -> None:
        meta = self._load()
        fsutil.remove_stale_tmp(self._dir)
        fsutil.remove(self._import)  # an import never finished (the daemon restarted)
        if self._dirty.exists():
            if fsutil.same_file(self._dirty, self._layer_path(meta.current)):
                fsutil.remove(self._dirty)  # a commit interrupted after its last step
            else:
                return  # not committed after a crash: the qube goes on with its data
        if self.snapshots_disabled:
            meta.revisions.clear()
            self._save(meta)
            self._collect(meta)
            if self._pinned(meta.current):
                raise self.error("its data is in use by running qubes based on it, and "
                                 "revisions_to_keep=-1 would write to it directly")
            return
        top = self._layer_path(meta.current)
        tmp = fsutil.tmp_name(self._dirty)
        qemu_img.create(tmp, meta.size, backing=top,
                        backing_fmt=meta.layers[meta.current].format)
        fsutil.rename(tmp, self._dirty)

    def _start_snapshot(self) -> None:
        source = self._file_source()
        self._discard_snapshot()
        self._dir.mkdir(parents=True, exist_ok=True)
        with source._lock:
            meta = source._load()
            chain = source._pin(meta, self._pins)
        top = chain[0]
        try:
            tmp = fsutil.tmp_name(self._dirty)
            qemu_img.create(tmp, max(meta.size, self._size), backing=Path(top.path),
                            backing_fmt=top.format)
            fsutil.rename(tmp, self._dirty)
        except BaseException:
            self._discard_snapshot()
            fsutil.remove_stale_tmp(self._dir)
            raise

    def _pin(self, meta: Meta, where: Path) -> list[BackingFile]:
        """Hard-link the current chain into ``where`` (so it is never changed in place)."""
        fsutil.remove_tree(where)
        where.mkdir(parents=True)
        pinned: list[dict[str, Any]] = []
        try:
            for index, entry in enumerate(self._chain_files(meta, meta.current)):
                name = f"{index}.img"
                os.link(entry.path, where / name)
                pinned.append({"file": name, "format": entry.format,
                               "layer": Path(entry.path).name})
            fsutil.write_json(where / "chain.json", pinned)
        except BaseException:
            fsutil.remove_tree(where)
            raise
        return [BackingFile(str(where / e["file"]), e["format"]) for e in pinned]

    def _discard_snapshot(self) -> None:
        fsutil.remove(self._dirty)
        fsutil.remove_tree(self._pins)

    def _stop(self) -> None:
        if self._origin:
            if self.is_dirty():
                if self.rw:
                    self._commit_dirty()
                else:
                    fsutil.remove(self._dirty)
            elif self._dirty.exists():
                fsutil.remove(self._dirty)
        elif self.snap_on_start:
            had_pins = self._pins.exists()
            self._discard_snapshot()
            source = self._source_or_none()
            if had_pins and isinstance(source, FileVolume):
                source._collect_if_idle()
        else:
            fsutil.remove(self._volatile)

    # ----- commits and collection ---------------------------------------------------

    def _commit_dirty(self) -> None:
        meta = self._load()
        new = meta.new_id()
        fsutil.fsync_file(self._dirty)
        os.link(self._dirty, self._layer_path(new))
        self._add_current(meta, new, Layer("qcow2", meta.current, time.time()))
        fsutil.remove(self._dirty)
        fsutil.fsync_dir(self._dir)
        self._collect(meta)

    def _add_current(self, meta: Meta, new: str, layer: Layer, size: int | None = None) -> None:
        """Record layer ``new`` (its file in place) as current; the old one as a revision.

        The volume gets ``size`` bytes, or (None) stays as large as it was recorded
        (a running qube's disk may have been grown) and at least as large as the layer.
        """
        path = self._layer_path(new)
        actual = qemu_img.virtual_size(path, layer.format)
        wanted = max(meta.size, actual) if size is None else max(size, actual)
        if actual < wanted:
            qemu_img.resize(path, wanted, layer.format)
        old = meta.current
        meta.layers[new] = layer
        meta.revisions.append(Revision(meta.new_id(), old,
                                       fsutil.isodate(meta.layers[old].committed)))
        meta.current = new
        meta.size = wanted
        self._save(meta)

    def _collect_if_idle(self) -> None:
        with self._lock:
            if not self.is_running() and not self.is_dirty() and self._has_data():
                self._collect(self._load())

    def _collect(self, meta: Meta) -> None:
        """Drop revisions beyond revisions_to_keep, then collapse unreferenced layers."""
        keep = max(self.revisions_to_keep, 0)
        if len(meta.revisions) > keep:
            meta.revisions = meta.revisions[len(meta.revisions) - keep:]
            self._save(meta)
        while self._collapse_one(meta):
            pass
        for entry in self._dir.iterdir():
            match = _LAYER_FILE.match(entry.name)
            if match and match.group(1) not in meta.layers:
                fsutil.remove(entry)

    def _collapse_one(self, meta: Meta) -> bool:
        referenced = meta.referenced()
        for lid in sorted(meta.layers, key=int):
            if lid in referenced:
                continue
            children = meta.children(lid)
            if not children:
                del meta.layers[lid]
                self._save(meta)
                fsutil.remove(self._layer_path(lid))
                return True
            if len(children) == 1 and not self._pinned(lid):
                self._merge(meta, lid, children[0])
                return True
        return False

    def _merge(self, meta: Meta, lower: str, child: str) -> None:
        """Give hidden ``lower`` the data of its only child, then put it in the child's place.

        Every step leaves chains that read right: the commit only writes what the child
        overrides; the child's own children get ``lower`` as backing (same data); then
        references move to ``lower`` and the child, now unused, is deleted.
        """
        qemu_img.commit(self._layer_path(child))
        lower_layer = meta.layers[lower]
        for grandchild in meta.children(child):
            qemu_img.rebase_unsafe(self._layer_path(grandchild), self._layer_path(lower),
                                   lower_layer.format)
            meta.layers[grandchild].backing = lower
            self._save(meta)
        lower_layer.committed = meta.layers[child].committed
        if meta.current == child:
            meta.current = lower
        for revision in meta.revisions:
            if revision.layer == child:
                revision.layer = lower
        del meta.layers[child]
        self._save(meta)
        fsutil.remove(self._layer_path(child))

    # ----- resize, revert -----------------------------------------------------------

    def _resize(self, size: int) -> None:
        if self._origin and self._has_data():
            meta = self._load()
            meta.size = size
            if self.is_running() or self.is_dirty():
                self._save(meta)  # the hypervisor grows the running disk; commit keeps it
                return
            top = meta.current
            if self._pinned(top):
                new = meta.new_id()
                qemu_img.create(self._layer_path(new), size, backing=self._layer_path(top),
                                backing_fmt=meta.layers[top].format)
                meta.layers[new] = Layer("qcow2", top, meta.layers[top].committed)
                meta.current = new
            else:
                qemu_img.resize(self._layer_path(top), size, meta.layers[top].format)
            self._save(meta)
        elif not self.snap_on_start and self._volatile.exists():
            fsutil.resize_file(self._volatile, size)

    def _revert(self, revision: str) -> None:
        meta = self._load()
        chosen = next(r for r in meta.revisions if r.id == revision)
        meta.revisions.remove(chosen)
        old = meta.current
        meta.revisions.append(Revision(meta.new_id(), old,
                                       fsutil.isodate(meta.layers[old].committed)))
        meta.current = chosen.layer
        meta.size = qemu_img.virtual_size(self._layer_path(chosen.layer),
                                          meta.layers[chosen.layer].format)
        self._save(meta)
        self._collect(meta)

    # ----- import and export --------------------------------------------------------

    def _import_data(self, size: int) -> str:
        self._load()
        fsutil.create_sparse(self._import, size)
        return str(self._import)

    def _import_data_end(self, success: bool) -> None:
        if not self._import.exists():
            raise self.error("no import in progress")
        if not success:
            fsutil.remove(self._import)
            return
        self._commit_raw(self._import)

    def _commit_raw(self, data: Path) -> None:
        """Make the raw image ``data`` (in this volume's directory) the current data."""
        meta = self._load()
        new = meta.new_id()
        fsutil.fsync_file(data)
        size = data.stat().st_size
        fsutil.rename(data, self._layer_path(new))
        self._add_current(meta, new, Layer("raw", None, time.time()), size)
        self._collect(meta)

    def _import_volume(self, src: Volume, progress: Progress | None) -> None:
        self._load()
        tmp = fsutil.tmp_name(self._import)
        try:
            origin = src.source if src.snap_on_start else src
            if isinstance(origin, FileVolume) and origin.save_on_stop:
                origin._convert_committed(tmp, progress)
            else:
                exported = src.export()
                try:
                    copy_data(Path(exported), tmp, size=src.size, progress=progress,
                              skip_zeroes=True)
                finally:
                    src.export_end(exported)
            self._commit_raw(tmp)
        finally:
            fsutil.remove(tmp)

    def _convert_committed(self, dst: Path, progress: Progress | None) -> None:
        """Write the committed data, flattened, to a new sparse raw image ``dst``."""
        pins, chain = self._pin_for_reading()
        try:
            qemu_img.convert(Path(chain[0].path), chain[0].format, dst, "raw",
                             size=self.size, progress=progress)
        finally:
            self._unpin_reading(pins)

    def _pin_for_reading(self) -> tuple[Path, list[BackingFile]]:
        with self._lock:
            meta = self._load()
            pins = self._dir / f"export-{secrets.token_hex(4)}"
            return pins, self._pin(meta, pins)

    def _unpin_reading(self, pins: Path) -> None:
        fsutil.remove_tree(pins)
        self._collect_if_idle()

    def _export(self, progress: Progress | None) -> str:
        if self.snap_on_start:
            return self._file_source().export(progress)
        if not self._origin:
            raise self.error("a volatile volume has no data to export")
        pins, chain = self._pin_for_reading()
        try:
            if len(chain) == 1 and chain[0].format == "raw":
                return chain[0].path
            out = pins / "data.raw"
            qemu_img.convert(Path(chain[0].path), chain[0].format, out, "raw",
                             size=self.size, progress=progress)
            return str(out)
        except BaseException:
            fsutil.remove_tree(pins)
            raise

    def _export_end(self, path: str) -> None:
        if self.snap_on_start:
            self._file_source().export_end(path)
            return
        pins = Path(path).parent
        if pins.parent != self._dir or not pins.name.startswith("export-"):
            raise self.error(f"{path} is not an export of this volume")
        self._unpin_reading(pins)


class FilePool(Pool):
    """Volumes as image files under ``dir_path``."""

    driver = "file"
    parameters = {"dir_path": None}
    volume_class = FileVolume

    def __init__(self, name: str, **config: str | int | bool) -> None:
        super().__init__(name, **config)
        self.dir_path = os.path.normpath(os.path.abspath(self.setting("dir_path")))
        self._settings["dir_path"] = self.dir_path

    def setup(self) -> None:
        if shutil.which(qemu_img.QEMU_IMG) is None:
            raise self.error("qemu-img is not installed (package qemu-utils)")
        try:
            for sub in ("", *_SUBDIRS):
                Path(self.dir_path, sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.error(f"cannot create {self.dir_path}: {exc}") from exc
        if not os.access(self.dir_path, os.W_OK):
            raise self.error(f"{self.dir_path} is not writable")

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
            for meta in root.glob(f"{sub}/*/*.d/meta.json"):
                rel = meta.parent.relative_to(root).as_posix()
                vids.append(rel[: -len(".d")])
        return sorted(vids)

    def _discover(self, vid: str) -> Volume | None:
        state = Path(self.dir_path, vid + ".d", "meta.json")
        if not state.exists():
            return None
        try:
            size = int(json.loads(state.read_text())["size"])
        except (OSError, ValueError, KeyError) as exc:
            raise self.error(f"damaged metadata {state}: {exc}") from exc
        config = VolumeConfig(name=vid.rsplit("/", 1)[-1], rw=True, save_on_stop=True, size=size)
        return FileVolume(self, vid, config)

    @property
    def size(self) -> int | None:
        return fsutil.fs_size(self.dir_path)

    @property
    def usage(self) -> int | None:
        return fsutil.fs_usage(self.dir_path)
