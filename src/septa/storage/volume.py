"""A volume of a pool: the common behaviour of every driver's volumes.

A :class:`~septa.storage.pool.Pool` holds volumes; a driver is a pair of subclasses.
The four kinds of volume, as in Qubes:

=============  ============  =========================================================
snap_on_start  save_on_stop  behaviour
=============  ============  =========================================================
False          True          *origin*: own data; each stop commits it, keeping revisions
True           False         *snapshot*: each start takes a copy-on-write snapshot of the
                             source's current data; its writes vanish at stop
False          False         *volatile*: empty at each start, discarded at stop
True           True          not supported (refused by every driver)
=============  ============  =========================================================

Public methods take a per-volume lock and turn low-level failures (``OSError``, a failing
tool) into :class:`StoragePoolException` naming the pool, the volume and the action; the
drivers implement the underscored hooks. All of it is blocking code, to be run in an
executor by the daemon.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

from septa import paths
from septa.core.errors import StoragePoolException
from septa.storage.command import ToolError
from septa.storage.copy import Progress
from septa.storage.model import (
    BlockDevice,
    StorageValueError,
    VolumeConfig,
    parse_bool,
    parse_int,
)

if TYPE_CHECKING:
    from septa.storage.pool import Pool


def _state_file(pool: str, vid: str) -> Path:
    escaped = f"{pool}:{vid}".replace("-", "--").replace("/", "-")
    return paths.current().runtime_dir / f"volume-running-{escaped}"


V = TypeVar("V", bound="Volume")


class Volume(abc.ABC):
    """One volume in a pool; see the module documentation for the four kinds."""

    #: The most revisions this driver keeps (None: no limit).
    max_revisions: ClassVar[int | None] = None

    def __init__(self, pool: Pool, vid: str, config: VolumeConfig) -> None:
        if config.snap_on_start and config.save_on_stop:
            raise StorageValueError(f"Volume {config.name!r} in pool {pool.name!r}: "
                                    "snap_on_start together with save_on_stop is not supported")
        if config.snap_on_start and not config.source:
            raise StorageValueError(f"Volume {config.name!r} in pool {pool.name!r}: "
                                    "snap_on_start needs a source volume")
        if config.source and not config.snap_on_start:
            raise StorageValueError(f"Volume {config.name!r} in pool {pool.name!r}: "
                                    "a source is only used with snap_on_start")
        self.pool = pool
        self.vid = vid
        self.name = config.name
        self.rw = bool(config.rw)
        self.snap_on_start = bool(config.snap_on_start)
        self.save_on_stop = bool(config.save_on_stop)
        self._size = parse_int(config.size or 0, "volume size", 0)
        self._source_vid = config.source
        self._source: Volume | None = None
        self._revisions_to_keep = self._valid_revisions(
            config.revisions_to_keep if config.revisions_to_keep is not None
            else pool.revisions_to_keep if self.save_on_stop else 0)
        self._ephemeral: bool | None = None
        if config.ephemeral is not None:
            self.ephemeral = config.ephemeral
        self._lock = pool.lock_for(vid)

    # ----- identity -----------------------------------------------------------------

    def __str__(self) -> str:
        return self.vid

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.pool.name}:{self.vid}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Volume):
            return other.pool.name == self.pool.name and other.vid == self.vid
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.pool.name, self.vid))

    # ----- settings -----------------------------------------------------------------

    @property
    def source(self) -> Volume | None:
        """The volume a snap_on_start volume snapshots (looked up when first needed)."""
        if self._source_vid is None:
            return None
        known = self.pool.known_volume(self._source_vid)
        if known is not None:
            return known
        if self._source is None or self._source.vid != self._source_vid:
            self._source = self.pool.get_volume(self._source_vid)
        return self._source

    def _source_or_none(self) -> Volume | None:
        """The source, or None if there is none or it cannot be found (any more)."""
        try:
            return self.source
        except StoragePoolException:
            return None

    @property
    def source_vid(self) -> str | None:
        return self._source_vid

    def _same_pool_source(self, kind: type[V], *, holds_data: bool = True) -> V:
        """The source as a volume of this driver and pool (snapshots are made in place);
        with ``holds_data``, also one that keeps data of its own (save_on_stop)."""
        source = self.source
        if not isinstance(source, kind) or source.pool.name != self.pool.name:
            raise self.error(f"its source {self.source_vid} must be a volume of the same pool")
        if holds_data and not source.save_on_stop:
            raise self.error(f"its source {source.vid} holds no data of its own")
        return source

    def _valid_revisions(self, value: int) -> int:
        number = parse_int(value, "revisions_to_keep", -1)
        if self.max_revisions is not None and number > self.max_revisions:
            raise StorageValueError(f"Pool {self.pool.name!r} ({self.pool.driver}) keeps at most "
                                    f"{self.max_revisions} revisions of a volume")
        return number

    @property
    def revisions_to_keep(self) -> int:
        return self._revisions_to_keep

    @revisions_to_keep.setter
    def revisions_to_keep(self, value: int) -> None:
        number = self._valid_revisions(value)
        switching = (number == -1) != (self._revisions_to_keep == -1)
        if switching and self.save_on_stop and (self.is_running() or self.is_dirty()):
            raise self.error("cannot turn revisions_to_keep=-1 on or off while the volume "
                             "is in use")
        self._revisions_to_keep = number

    @property
    def snapshots_disabled(self) -> bool:
        """revisions_to_keep -1 on an origin volume: the qube writes straight to its data."""
        return self.revisions_to_keep == -1 and self.save_on_stop and not self.snap_on_start

    def _ephemeral_possible(self) -> bool:
        return self.rw and not self.snap_on_start and not self.save_on_stop

    @property
    def ephemeral(self) -> bool:
        """Encrypt this volume with a throw-away key (volatile, writable volumes only)."""
        if self._ephemeral is not None:
            return self._ephemeral
        return self._ephemeral_possible() and self.pool.ephemeral_volatile

    @ephemeral.setter
    def ephemeral(self, value: bool) -> None:
        flag = parse_bool(value, "ephemeral")
        if flag and not self._ephemeral_possible():
            raise StorageValueError(f"Volume {self}: ephemeral needs a writable volume that is "
                                    "neither snap_on_start nor save_on_stop")
        self._ephemeral = flag

    @property
    def config(self) -> VolumeConfig:
        """The configuration to store in qubes.xml."""
        return VolumeConfig(
            name=self.name, pool=self.pool.name, vid=self.vid, size=self.size or None,
            rw=self.rw, snap_on_start=self.snap_on_start, save_on_stop=self.save_on_stop,
            source=self._source_vid, revisions_to_keep=self.revisions_to_keep,
            ephemeral=self._ephemeral)

    # ----- state --------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Size in bytes of the volume as a qube sees it."""
        return self._size

    @property
    @abc.abstractmethod
    def usage(self) -> int:
        """Bytes really used (less than size for sparse data)."""

    @property
    @abc.abstractmethod
    def path(self) -> str:
        """Where the data is (informational: admin.vm.volume.Info's ``path``)."""

    @property
    def state_file(self) -> Path:
        return _state_file(self.pool.name, self.vid)

    def is_running(self) -> bool:
        """Started and not yet stopped."""
        return self.state_file.exists()

    def is_dirty(self) -> bool:
        """An origin volume with a running layer not committed yet (running, or crashed)."""
        return False

    def is_outdated(self) -> bool:
        """A running snapshot whose source has newer data than at this volume's start."""
        return False

    @abc.abstractmethod
    def revisions(self) -> dict[str, str]:
        """Revision id -> ISO time, oldest first."""

    @abc.abstractmethod
    def block_device(self) -> BlockDevice | None:
        """What the hypervisor attaches while the qube runs (None: nothing to attach)."""

    def info(self) -> dict[str, str]:
        """The ``key=value`` pairs of admin.vm.volume.Info, in the Qubes order."""
        def text(value: object) -> str:
            return "" if value is None else str(value)
        return {
            "pool": self.pool.name, "vid": self.vid, "size": text(self.size),
            "usage": text(self.usage), "rw": text(self.rw), "source": text(self._source_vid),
            "path": text(self.path), "save_on_stop": text(self.save_on_stop),
            "snap_on_start": text(self.snap_on_start),
            "revisions_to_keep": text(self.revisions_to_keep), "ephemeral": text(self.ephemeral),
            "is_outdated": text(self.is_outdated()),
        }

    # ----- error handling -----------------------------------------------------------

    def error(self, problem: str) -> StoragePoolException:
        return StoragePoolException(f"Volume {self.vid} in pool {self.pool.name}: {problem}")

    @contextlib.contextmanager
    def _operation(self, action: str, *, lock: bool = True) -> Iterator[None]:
        with self._lock if lock else contextlib.nullcontext():
            try:
                yield
            except StoragePoolException:
                raise
            except (OSError, ToolError) as exc:
                raise self.error(f"cannot {action}: {exc}") from exc

    def _check_stopped(self, action: str) -> None:
        if self.is_running() or self.is_dirty():
            raise self.error(f"cannot {action} while the volume is in use by a running qube "
                             "(or was not stopped cleanly: start and stop its qube first)")

    # ----- life cycle ---------------------------------------------------------------

    def create(self) -> None:
        """Create the volume's storage (once in its lifetime)."""
        with self._operation("create"):
            self._create()

    def remove(self) -> None:
        """Remove all the volume's data, revisions and running layers."""
        with self._operation("remove"):
            self._remove()
            self.state_file.unlink(missing_ok=True)
            self.pool.forget(self)

    def start(self) -> None:
        """Prepare the volume for a run of its qube."""
        with self._operation("start"):
            if self.is_running():
                raise self.error("is already started (stop it first)")
            if self.pool.is_importing(self.vid):
                raise self.error("cannot start while data is being imported")
            source = self.source
            if source is not None and source.snapshots_disabled and source.is_running():
                raise self.error(f"its source {source.vid} is in use by a running qube that "
                                 "writes to it directly (revisions_to_keep=-1)")
            self._start()
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            self.state_file.touch()

    def stop(self) -> None:
        """End a run: commit (origin) or discard (snapshot, volatile) what the qube wrote."""
        with self._operation("stop"):
            self._stop()
            self.state_file.unlink(missing_ok=True)

    def verify(self) -> None:
        """Raise StoragePoolException if data the volume needs is missing."""
        with self._operation("verify"):
            self._verify()

    def resize(self, size: int) -> None:
        """Grow the volume to ``size`` bytes; shrinking is refused.

        For a running volume the storage grows what it can and records the size; the
        hypervisor must then grow the attached disk (a live block resize).
        """
        new = parse_int(size, "volume size", 1)
        with self._operation("resize"):
            if not self.rw:
                raise self.error("cannot resize a read-only volume")
            current = self.size
            if new < current:
                raise self.error(f"cannot shrink from {current} to {new} bytes "
                                 "(volumes can only grow)")
            if new == current:
                return
            self._resize(new)
            self._size = new

    def revert(self, revision: str | None = None) -> None:
        """Make a previous revision the current data (the current data becomes a revision)."""
        with self._operation("revert"):
            self._check_stopped("revert")
            revisions = self.revisions()
            if not revisions:
                raise self.error("has no revisions to revert to")
            if revision is None:
                revision = list(revisions)[-1]
            if revision not in revisions:
                raise self.error(f"has no revision {revision!r}")
            self._revert(revision)

    def import_data(self, size: int) -> str:
        """A path to write ``size`` bytes of new raw data to; see :meth:`import_data_end`."""
        new = parse_int(size, "import size", 1)
        with self._operation("import data"):
            if not self.save_on_stop:
                raise self.error("cannot import data into a volume that is not save_on_stop")
            self._check_stopped("import data")
            path = self._import_data(new)
            self.pool.set_importing(self.vid, True)
            return path

    def import_data_end(self, success: bool) -> None:
        """Replace the volume's data with what was written (success) or drop it (failure).

        Another :meth:`import_data` before the end replaces the unfinished import.
        """
        with self._operation("finish an import"):
            try:
                self._import_data_end(success)
            finally:
                self.pool.set_importing(self.vid, False)
            if success:
                self._size = self.size

    def import_volume(self, src: Volume, progress: Progress | None = None) -> None:
        """Replace this (created, stopped) volume's data with a copy of ``src``'s (clone)."""
        with self._operation(f"import volume {src.pool.name}:{src.vid}"):
            if not self.save_on_stop:
                return
            self._check_stopped("import a volume")
            if src.snapshots_disabled and src.is_running():
                raise self.error(f"its source {src.vid} is running and written directly; "
                                 "stop it first")
            self._import_volume(src, progress)
            self._size = self.size

    def export(self, progress: Progress | None = None) -> str:
        """A path to read the committed data from, as a raw image (see :meth:`export_end`).

        The data is that of the last commit even while the qube runs, and stays the same
        until :meth:`export_end`. Drivers take the volume's lock only as long as needed,
        so that a long export does not hold up the qube's start or stop.
        """
        with self._operation("export", lock=False):
            return self._export(progress)

    def export_end(self, path: str) -> None:
        """Release what :meth:`export` made."""
        with self._operation("end an export", lock=False):
            self._export_end(path)

    # ----- driver hooks -------------------------------------------------------------

    @abc.abstractmethod
    def _create(self) -> None: ...

    @abc.abstractmethod
    def _remove(self) -> None: ...

    @abc.abstractmethod
    def _start(self) -> None: ...

    @abc.abstractmethod
    def _stop(self) -> None: ...

    def _verify(self) -> None:
        return None

    @abc.abstractmethod
    def _resize(self, size: int) -> None: ...

    @abc.abstractmethod
    def _revert(self, revision: str) -> None: ...

    @abc.abstractmethod
    def _import_data(self, size: int) -> str: ...

    @abc.abstractmethod
    def _import_data_end(self, success: bool) -> None: ...

    @abc.abstractmethod
    def _import_volume(self, src: Volume, progress: Progress | None) -> None: ...

    @abc.abstractmethod
    def _export(self, progress: Progress | None) -> str: ...

    @abc.abstractmethod
    def _export_end(self, path: str) -> None: ...
