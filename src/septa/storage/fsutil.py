"""Small, crash-aware file operations shared by the file-based pool drivers.

Every function here either completes or leaves the old state: new content is written
to a temporary name in the same directory, flushed, and renamed over the target; the
directory is fsynced after names change.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

TMP_SUFFIX = ".tmp"


def isodate(seconds: float) -> str:
    """The Qubes revision time format: UTC, ISO 8601, no time-zone suffix."""
    return datetime.fromtimestamp(int(seconds), tz=UTC).replace(tzinfo=None).isoformat()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name(target: Path) -> Path:
    """A fresh temporary name next to ``target``, recognisable as ours by its suffix."""
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def remove_stale_tmp(directory: Path) -> None:
    """Remove the temporary files an interrupted operation may have left in ``directory``."""
    with contextlib.suppress(FileNotFoundError):
        for entry in directory.iterdir():
            if entry.name.startswith(".") and entry.name.endswith(TMP_SUFFIX):
                remove(entry)


@contextlib.contextmanager
def replacing(target: Path, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Write a new file and put it at ``target`` only if the block completes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        remove(tmp)
        raise


def write_json(target: Path, data: Any) -> None:
    with replacing(target) as handle:
        handle.write(json.dumps(data, indent=1, sort_keys=True).encode() + b"\n")


def read_json(path: Path) -> Any:
    with open(path, "rb") as handle:
        return json.loads(handle.read())


def create_sparse(target: Path, size: int, mode: int = 0o600) -> None:
    """A new file of ``size`` bytes, all a hole, put at ``target`` atomically."""
    with replacing(target, mode) as handle:
        handle.truncate(size)


def resize_file(path: Path, size: int) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(size)
        os.fsync(handle.fileno())


def rename(src: Path, dst: Path) -> None:
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def remove(path: Path) -> bool:
    """Remove a file if it exists; True if something was removed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def remove_tree(path: Path) -> None:
    """Remove a directory of plain files (one level of subdirectories at most deep)."""
    with contextlib.suppress(FileNotFoundError):
        for entry in path.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                remove_tree(entry)
            else:
                remove(entry)
        os.rmdir(path)


def remove_empty_dirs(path: Path, stop: Path) -> None:
    """Remove ``path`` and its parents while they are empty, never ``stop`` or above it."""
    while path != stop and stop in path.parents:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return
            raise
        path = path.parent


def hardlink(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove(dst)
    os.link(src, dst)


def symlink(target: str, link: Path) -> None:
    """Point ``link`` at ``target``, replacing any old link atomically."""
    tmp = tmp_name(link)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        remove(tmp)
        raise


def disk_usage(path: Path) -> int:
    """Bytes really allocated to a file (holes not counted); 0 if it does not exist."""
    try:
        return os.lstat(path).st_blocks * 512
    except FileNotFoundError:
        return 0


def link_count(path: Path) -> int:
    return os.stat(path).st_nlink


def same_file(one: Path, other: Path) -> bool:
    """Both names lead to the same inode (False when either is missing)."""
    try:
        a, b = os.stat(one), os.stat(other)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def fs_size(path: str | Path) -> int | None:
    """Size in bytes of the filesystem holding ``path`` (None if it does not exist)."""
    try:
        st = os.statvfs(path)
    except FileNotFoundError:
        return None
    return st.f_frsize * st.f_blocks


def fs_usage(path: str | Path) -> int | None:
    """Bytes used on the filesystem holding ``path`` (None if it does not exist)."""
    try:
        st = os.statvfs(path)
    except FileNotFoundError:
        return None
    return st.f_frsize * (st.f_blocks - st.f_bfree)
