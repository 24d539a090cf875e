"""Copying volume data: reflinks where the filesystem can share blocks, else a sparse copy.

The sparse copy walks the source's data extents with ``SEEK_DATA``/``SEEK_HOLE`` so holes
stay holes, moves bytes with ``copy_file_range`` where the kernel allows it (falling back
to ``pread``/``pwrite``), and can skip all-zero blocks when the target reads as zeros
already (a fresh thin volume). Progress is reported as ``(bytes_done, bytes_total)``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

Progress = Callable[[int, int], None]

#: ``_IOW(0x94, 9, int)`` from <linux/fs.h>, the same on x86-64 and arm64.
FICLONE = 0x40049409
CHUNK = 8 << 20
_ZEROES = bytes(CHUNK)
_NO_REFLINK = (errno.EOPNOTSUPP, errno.EINVAL, errno.EXDEV, errno.ENOTTY, errno.EBADF)
_NO_COPY_RANGE = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF)


def reflink_fd(src_fd: int, dst_fd: int) -> None:
    """Make ``dst_fd`` share all of ``src_fd``'s blocks; OSError if the filesystem cannot."""
    fcntl.ioctl(dst_fd, FICLONE, src_fd)


def reflink(src: Path, dst: Path) -> None:
    """Create ``dst`` as a reflink copy of ``src`` (no data is copied)."""
    with open(src, "rb") as s, open(dst, "xb") as d:
        try:
            reflink_fd(s.fileno(), d.fileno())
        except BaseException:
            os.unlink(dst)
            raise


def reflink_supported(directory: Path) -> bool:
    """Whether files in ``directory`` can be reflinked to each other."""
    with tempfile.TemporaryFile(dir=directory) as src, tempfile.TemporaryFile(dir=directory) as dst:
        src.write(b"septa reflink probe")
        src.flush()
        try:
            reflink_fd(src.fileno(), dst.fileno())
        except OSError as exc:
            if exc.errno in _NO_REFLINK:
                return False
            raise
    return True


def size_of(fd: int) -> int:
    """Size of a regular file or block device."""
    st = os.fstat(fd)
    if stat.S_ISBLK(st.st_mode):
        return os.lseek(fd, 0, os.SEEK_END)
    return st.st_size


def data_extents(fd: int, end: int) -> Iterator[tuple[int, int]]:
    """The ``(start, stop)`` ranges of ``fd`` below ``end`` that may hold data."""
    pos = 0
    while pos < end:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole up to the end
                return
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # no hole support: all data
                yield pos, end
                return
            raise
        if start >= end:
            return
        stop = min(os.lseek(fd, start, os.SEEK_HOLE), end)
        yield start, stop
        pos = stop


def _copy_range(src: int, dst: int, start: int, stop: int, skip_zeroes: bool,
                fast: list[bool]) -> None:
    pos = start
    while pos < stop:
        count = min(CHUNK, stop - pos)
        if fast[0] and not skip_zeroes:
            try:
                done = os.copy_file_range(src, dst, count, pos, pos)
            except OSError as exc:
                if exc.errno not in _NO_COPY_RANGE:
                    raise
                fast[0] = False
                continue
            if done == 0:
                raise OSError(errno.EIO, f"unexpected end of data at offset {pos}")
            pos += done
            continue
        chunk = os.pread(src, count, pos)
        if not chunk:
            raise OSError(errno.EIO, f"unexpected end of data at offset {pos}")
        if not (skip_zeroes and chunk == _ZEROES[: len(chunk)]):
            view = memoryview(chunk)
            written = 0
            while written < len(chunk):
                written += os.pwrite(dst, view[written:], pos + written)
        pos += len(chunk)


def copy_data(src: Path, dst: Path, *, size: int | None = None, progress: Progress | None = None,
              skip_zeroes: bool = False) -> None:
    """Copy the first ``size`` bytes (default: all) of ``src`` into ``dst``, keeping holes.

    A regular ``dst`` is created if missing and its length set to ``size``; a block device
    ``dst`` must be large enough. With ``skip_zeroes``, blocks of zeroes are not written
    (for a target that reads as zeroes, such as a fresh thin volume or a new sparse file).
    """
    sfd = os.open(src, os.O_RDONLY)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            total = size_of(sfd) if size is None else size
            dst_is_file = stat.S_ISREG(os.fstat(dfd).st_mode)
            if dst_is_file:
                os.ftruncate(dfd, total)
            if progress:
                progress(0, total)
            fast = [True]
            for start, stop in data_extents(sfd, min(total, size_of(sfd))):
                _copy_range(sfd, dfd, start, stop, skip_zeroes, fast)
                if progress:
                    progress(stop, total)
            os.fsync(dfd)
            if progress:
                progress(total, total)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def clone_or_copy(src: Path, dst: Path, *, size: int | None = None,
                  progress: Progress | None = None) -> bool:
    """Create ``dst`` from ``src`` by reflink if possible, else by sparse copy.

    Returns True if the blocks were shared. ``dst`` must not exist.
    """
    total = size if size is not None else src.stat().st_size
    try:
        reflink(src, dst)
    except OSError as exc:
        if exc.errno not in _NO_REFLINK:
            raise
    else:
        if size is not None:
            os.truncate(dst, size)
        if progress:
            progress(total, total)
        return True
    try:
        copy_data(src, dst, size=size, progress=progress, skip_zeroes=True)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst)
        raise
    return False
