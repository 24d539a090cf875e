"""The first phase of a restore: read the whole backup and authenticate and extract the
files of the qubes to restore into a private staging directory, before any qube is
created.

Every chunk of a chosen qube's members is decrypted and authenticated, and its inner
archive extracted (volumes sparse); members of qubes not chosen (and dom0's home) are
passed over, their names and order still checked. Once the stream ends, every volume
the backup's registry says was saved must have come: a backup cut short fails here,
naming what is missing. With ``verify_only`` the chosen members are verified and
nothing is written.

The staging directory is removed whatever happens (:func:`staging_dir`).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from septa import paths
from septa.backup import BackupReader
from septa.client.errors import BackupRestoreError
from septa.tools.restore_plan import QubeRestore
from septa.tools.restore_progress import human

FIREWALL_FILE = "firewall.xml"
NOTES_FILE = "notes.txt"
#: room for the reader's temporary chunk files, besides the staged data
CHUNK_ROOM = 256 << 20

log = logging.getLogger("qvm-backup-restore")


@dataclass
class StagedQube:
    """The files of one qube, extracted: by their name in the qube's backup folder."""

    entry: QubeRestore
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def volume_images(self) -> dict[str, Path]:
        """The volume images, by volume name (``private.img`` -> ``private``)."""
        return {name[:-len(".img")]: path for name, path in self.files.items()
                if name.endswith(".img")}


def default_staging_base() -> Path:
    """Where staging directories go: ``/var/tmp`` (under ``SEPTA_ROOT`` when set)."""
    return paths.current().root / "var/tmp"


@contextmanager
def staging_dir(base: Path | None = None) -> Iterator[Path]:
    """A new private directory, removed with everything in it at the end."""
    base = base or default_staging_base()
    base.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="septa-restore-", dir=base))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def check_space(directory: Path, entries: list[QubeRestore]) -> None:
    """Refuse to start when the staging file system cannot hold the chosen qubes' data
    (as the backup's registry estimates it)."""
    needed = sum(e.vm.backup_size for e in entries) + CHUNK_ROOM
    info = os.statvfs(directory)
    free = info.f_bavail * info.f_frsize
    if free < needed:
        raise BackupRestoreError(f"not enough free space in {directory.parent} to stage the "
                                 f"backup: it needs about {human(needed)}, {human(free)} are "
                                 f"free (--staging-dir picks another place)")


def _wanted(relative: str) -> bool:
    """Whether a file of a qube's backup folder is restored (volume images, firewall,
    notes); others (Qubes' ``whitelisted-appmenus.list``...) are only verified."""
    return relative in (FIREWALL_FILE, NOTES_FILE) or (
        relative.endswith(".img") and "/" not in relative and relative != ".img")


def _owner(name: str, entries: list[QubeRestore]) -> QubeRestore | None:
    for entry in entries:
        if entry.vm.backup_path and name.startswith(entry.vm.backup_path):
            return entry
    return None


def _check_file(path: Path, member: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        raise BackupRestoreError(f"{member}: its archive does not hold the file") from None
    if not stat.S_ISREG(mode):
        raise BackupRestoreError(f"{member}: not a regular file in the backup")


def _check_complete(reader: BackupReader, chosen: list[QubeRestore]) -> None:
    seen = set(reader.seen)
    for entry in chosen:
        path = entry.vm.backup_path or ""
        missing = [f"{path}{volume}.img" for volume in entry.vm.saved_volumes
                   if f"{path}{volume}.img" not in seen]
        if not entry.vm.saved_volumes and not any(name.startswith(path) for name in seen):
            missing.append(f"{path} (every file of {entry.vm.name})")
        if missing:
            raise BackupRestoreError(f"the backup is incomplete (cut short?): "
                                     f"{', '.join(missing)} of {entry.vm.name} "
                                     f"{'is' if len(missing) == 1 else 'are'} missing")


def stage(reader: BackupReader, plan: list[QubeRestore], dest: Path,
          verify_only: bool = False) -> dict[str, StagedQube]:
    """Read the rest of the backup (after ``qubes.xml``); extract the files of the qubes
    restored into *dest* (only verify them with *verify_only*). Returns the staged
    qubes by their name in the backup."""
    chosen = [entry for entry in plan if entry.good]
    staged = {entry.vm.name: StagedQube(entry) for entry in chosen}
    for member in reader.members():
        owner = _owner(member.name, plan)
        if owner is None or not owner.good:
            log.debug("passing over %s", member.name)
            member.skip()
            continue
        relative = member.name[len(owner.vm.backup_path or ""):]
        if verify_only or not _wanted(relative):
            log.debug("verifying %s", member.name)
            member.verify()
            continue
        log.debug("extracting %s", member.name)
        path = member.extract(dest)
        _check_file(path, member.name)
        staged[owner.vm.name].files[relative] = path
    _check_complete(reader, chosen)
    return staged
