"""The inner layer of a backup member: a tar archive of one file, named with its path in
the backup (``vm3/private.img``), optionally compressed by a filter command (``gzip``),
read as a stream.

A regular file is archived by GNU tar as Qubes does (``tar -c --sparse``, holes kept,
``--use-compress-program`` for compression). A block device is archived by us in the
pax sparse format Qubes' ``qubes.tarwriter`` uses (:mod:`septa.backup.sparse_tar`).
Data that is only a stream (of known size) is archived by us as one plain member. What
we generate is piped through the filter command when compressing.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

from septa.backup.errors import BackupError
from septa.backup.outer_tar import entry_trailer, valid_name
from septa.backup.sparse_tar import sparse_archive

IO_BLOCK = 1 << 20


class InnerStream:
    """A readable inner archive stream; :meth:`finish` checks that whatever produced it
    succeeded, :meth:`abort` stops it. Use it as a context manager (abort on error)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._stderr: list[IO[bytes]] = []
        self._feeder: threading.Thread | None = None
        self._feeder_error: BaseException | None = None
        self._output: IO[bytes] | None = None

    def read(self, size: int) -> bytes:
        """Read up to *size* bytes (b"" at the end)."""
        assert self._output is not None
        return self._output.read(size)

    def _start(self, command: list[str], stdin: int | IO[bytes] | None) -> subprocess.Popen[bytes]:
        errors = tempfile.TemporaryFile()
        self._stderr.append(errors)
        process = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=errors)
        self._processes.append((Path(command[0]).name, process))
        assert process.stdout is not None
        self._output = process.stdout
        return process

    def finish(self) -> None:
        """Wait for the producers; raise :class:`BackupError` if any of them failed."""
        if self._feeder is not None:
            self._feeder.join()
        failures = []
        for (program, process), errors in zip(self._processes, self._stderr, strict=True):
            if process.wait() != 0:
                errors.seek(0)
                message = errors.read(2000).decode("utf-8", "replace").strip()
                failures.append(f"{program} exited with {process.returncode}: {message}")
        self._close()
        if self._feeder_error is not None:
            raise BackupError(f"cannot archive {self.name}: {self._feeder_error}")
        if failures:
            raise BackupError(f"cannot archive {self.name}: " + "; ".join(failures))

    def abort(self) -> None:
        """Stop the producers and release everything."""
        for _, process in self._processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        self._close()
        if self._feeder is not None:
            self._feeder.join()

    def _close(self) -> None:
        if self._output is not None:
            self._output.close()
        for errors in self._stderr:
            errors.close()

    def __enter__(self) -> InnerStream:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is not None:
            self.abort()


def file_stream(name: str, path: Path, compression_filter: str | None) -> InnerStream:
    """The inner archive of the regular file *path* (symlinks followed), stored as *name*
    with its holes kept, like Qubes' ``tar -Pc --sparse ... --xform``."""
    _check_name(name)
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise BackupError(f"{path} is not a regular file (use a stream for devices)")
    command = ["tar", "-c", "--format=gnu", "--sparse", "--dereference",
               "-C", str(path.parent), f"--transform=s,^.*$,{name},"]
    if compression_filter:
        command.append(f"--use-compress-program={compression_filter}")
    command += ["-f", "-", "--", path.name]
    stream = InnerStream(name)
    stream._start(command, subprocess.DEVNULL)
    return stream


def data_stream(name: str, source: BinaryIO, size: int, compression_filter: str | None, *,
                mode: int = 0o644, mtime: float | None = None) -> InnerStream:
    """The inner archive of *size* bytes read from *source* (not sparse), stored as
    *name*. *source* must deliver exactly *size* bytes."""
    _check_name(name)
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = int(time.time() if mtime is None else mtime)
    info.uname = info.gname = "root"
    header = info.tobuf(tarfile.GNU_FORMAT)

    def pieces() -> Iterator[bytes]:
        yield header
        left = size
        while left:
            block = source.read(min(IO_BLOCK, left))
            if not block:
                raise BackupError(f"the data of {name} ended {left} bytes early")
            left -= len(block)
            yield block
        yield entry_trailer(len(header), size)

    return _generated(name, pieces(), compression_filter)


def device_stream(name: str, path: Path, compression_filter: str | None) -> InnerStream:
    """The inner archive of block device (or any seekable file) *path*, zero regions
    left out (see :mod:`septa.backup.sparse_tar`), stored as *name*."""
    _check_name(name)
    return _generated(name, sparse_archive(name, path), compression_filter)


def _generated(name: str, pieces: Iterator[bytes],
               compression_filter: str | None) -> InnerStream:
    """An inner stream whose bytes *pieces* yields, in a thread, through the filter."""
    stream = InnerStream(name)
    read_fd, write_fd = os.pipe()
    try:
        if compression_filter:
            stream._start([compression_filter], read_fd)
        else:
            stream._output = open(read_fd, "rb")  # noqa: SIM115 - closed by the stream
            read_fd = -1
    finally:
        if read_fd >= 0:
            os.close(read_fd)
    writer = open(write_fd, "wb")  # noqa: SIM115 - closed by the feeder thread

    def feed() -> None:
        try:
            with writer:
                for piece in pieces:
                    writer.write(piece)
        except BrokenPipeError:
            pass
        except BaseException as err:  # noqa: BLE001 - reported by finish()
            stream._feeder_error = err

    stream._feeder = threading.Thread(target=feed, name=f"backup-feed-{name}", daemon=True)
    stream._feeder.start()
    return stream


def _check_name(name: str) -> None:
    if not valid_name(name):
        raise ValueError(f"invalid backup member name {name!r}")
