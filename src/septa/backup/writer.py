"""The backup stream writer (Qubes backup format 4).

Writes, to any binary writable stream and without seeking: ``backup-header``,
``backup-header.hmac`` (the header in scrypt format under ``"backup-header!" +
passphrase``), then each member's inner archive (see :mod:`septa.backup.inner`) cut into
chunks of at most 100 MiB, each chunk encrypted in scrypt format under
``"<backup-id>!<member>.<NNN>!" + passphrase`` and written as its own tar archive
``<member>.<NNN>.enc`` (see :mod:`septa.backup.outer_tar`). The first member must be
``qubes.xml``. At most one encrypted chunk is held in a temporary file at a time.

Usage::

    with atomic_output(path) as out, BackupWriter(out, passphrase) as backup:
        backup.add_bytes("qubes.xml", registry_xml)
        backup.add_file("vm3/private.img", volume_path)

Leaving the ``with`` blocks by an exception (including KeyboardInterrupt) stops the
producers, and :func:`~septa.backup.atomic.atomic_output` removes the partial file.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from septa.backup import outer_tar, scrypt_file
from septa.backup.header import BackupHeader, new_backup_id
from septa.backup.inner import InnerStream, data_stream, device_stream, file_stream
from septa.backup.scrypt_file import DEFAULT_PARAMS, DerivedKey, ScryptParams
from septa.backup.sparse_tar import device_size

CHUNK_SIZE = 100 * 1024 * 1024
HEADER_NAME = "backup-header"
QUBES_XML = "qubes.xml"
IO_BLOCK = 1 << 20

#: progress callback: (bytes done, total estimate); both in source bytes
Progress = Callable[[int, int], None]


def chunk_passphrase(backup_id: str, chunk: str, passphrase: bytes) -> bytes:
    """The passphrase of chunk *chunk* (its path without ``.enc``, e.g. ``qubes.xml.000``)."""
    return f"{backup_id}!{chunk}!".encode() + passphrase


def header_passphrase(passphrase: bytes) -> bytes:
    """The passphrase of ``backup-header.hmac``."""
    return f"{HEADER_NAME}!".encode() + passphrase


def disk_usage(path: Path) -> int:
    """Bytes *path* occupies on disk (holes not counted): a size estimate for progress."""
    return os.stat(path).st_blocks * 512


class BackupWriter:
    """Writes one format 4 backup to *out*; see the module docstring.

    *passphrase* is mandatory (no unencrypted backups). *compression_filter* is a filter
    command (``gzip``, ``bzip2``, ``xz``) or None for no compression. *total_estimate* is
    the caller's size estimate of everything it will add (e.g. the sum of
    :func:`disk_usage`), reported as the total to *progress*.
    """

    def __init__(self, out: BinaryIO, passphrase: str | bytes, *,
                 compression_filter: str | None = "gzip", backup_id: str | None = None,
                 params: ScryptParams = DEFAULT_PARAMS, chunk_size: int = CHUNK_SIZE,
                 tmp_dir: Path | None = None, progress: Progress | None = None,
                 total_estimate: int = 0) -> None:
        self._passphrase = passphrase.encode() if isinstance(passphrase, str) else passphrase
        if not self._passphrase:
            raise ValueError("a backup needs a passphrase")
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.header = BackupHeader(backup_id=backup_id or new_backup_id(),
                                   compression_filter=compression_filter)
        self._out = out
        self._params = params
        self._chunk_size = chunk_size
        self._tmp_dir = tmp_dir
        self._progress = progress
        self.total_estimate = total_estimate
        self._done = 0
        self.members: list[str] = []
        #: bytes written to *out* so far
        self.written = 0
        self._keys = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup-kdf")
        self._write_header()

    @property
    def backup_id(self) -> str:
        """The id binding every chunk to this backup."""
        return self.header.backup_id

    def _write_header(self) -> None:
        data = self.header.to_bytes()
        self.written += outer_tar.write_entry(self._out, HEADER_NAME, data)
        encrypted = io.BytesIO()
        scrypt_file.encrypt(io.BytesIO(data), encrypted, header_passphrase(self._passphrase),
                            self._params)
        self.written += outer_tar.write_entry(self._out, f"{HEADER_NAME}.hmac",
                                              encrypted.getvalue())

    def add_file(self, name: str, path: Path, *, estimate: int | None = None,
                 scan_zeros: bool = False) -> None:
        """Add the regular file or block device *path* as member *name* (e.g.
        ``vm3/private.img``), holes left out: a file's holes as GNU tar finds them, a
        device's zero regions by reading it (*scan_zeros* does that for a file too).
        *estimate* is its share of the progress total (default: disk usage, or the size
        when scanning)."""
        self._check_new(name)
        device = scan_zeros or stat.S_ISBLK(os.stat(path).st_mode)
        if estimate is None:
            estimate = device_size(path) if device else disk_usage(path)
        opener = device_stream if device else file_stream
        with opener(name, path, self.header.compression_filter) as inner:
            self._write_member(name, inner, estimate)

    def add_stream(self, name: str, source: BinaryIO, size: int, *, mode: int = 0o644,
                   mtime: float | None = None) -> None:
        """Add exactly *size* bytes read from *source* as member *name* (not sparse)."""
        self._check_new(name)
        with data_stream(name, source, size, self.header.compression_filter, mode=mode,
                         mtime=mtime) as inner:
            self._write_member(name, inner, size)

    def add_bytes(self, name: str, data: bytes, *, mode: int = 0o644) -> None:
        """Add *data* as member *name* (for ``qubes.xml``, ``firewall.xml``, notes...)."""
        self.add_stream(name, io.BytesIO(data), len(data), mode=mode)

    def _check_new(self, name: str) -> None:
        if not outer_tar.valid_name(name) or name.startswith(HEADER_NAME):
            raise ValueError(f"invalid backup member name {name!r}")
        if not self.members and name != QUBES_XML:
            raise ValueError(f"the first member of a backup must be {QUBES_XML}, not {name}")
        if name in self.members:
            raise ValueError(f"member {name} is already in the backup")

    def _derive(self, chunk: str) -> Future[DerivedKey]:
        passphrase = chunk_passphrase(self.backup_id, chunk, self._passphrase)
        return self._keys.submit(scrypt_file.derive_key, passphrase, self._params)

    def _write_member(self, name: str, inner: InnerStream, share: int) -> None:
        self.members.append(name)
        start = self._done
        member_bytes = 0
        index = 0
        key = self._derive(f"{name}.{index:03d}")
        pending = b""
        while True:
            chunk = f"{name}.{index:03d}"
            encryptor = scrypt_file.Encryptor(key.result())
            next_key: Future[DerivedKey] | None = None
            if share - member_bytes > self._chunk_size:
                # more than a chunk is expected: derive the next key while this one fills
                next_key = self._derive(f"{name}.{index + 1:03d}")
            with tempfile.TemporaryFile(dir=self._tmp_dir) as temporary:
                temporary.write(encryptor.header)
                size = 0
                while size < self._chunk_size:
                    if not pending:
                        pending = inner.read(IO_BLOCK)
                        if not pending:
                            break
                    block = pending[:self._chunk_size - size]
                    pending = pending[len(block):]
                    temporary.write(encryptor.update(block))
                    size += len(block)
                    member_bytes += len(block)
                    self._report(start + min(member_bytes, share))
                    if next_key is None and size >= self._chunk_size // 2:
                        next_key = self._derive(f"{name}.{index + 1:03d}")
                if not pending:
                    pending = inner.read(IO_BLOCK)
                temporary.write(encryptor.finalize())
                self._emit(f"{chunk}.enc", temporary, size + scrypt_file.OVERHEAD)
            if not pending:
                break
            index += 1
            key = next_key or self._derive(f"{name}.{index:03d}")
        if next_key is not None and next_key is not key:
            next_key.cancel()
        inner.finish()
        self._done = start + share
        self._report(self._done)

    def _emit(self, name: str, temporary: BinaryIO, size: int) -> None:
        temporary.seek(0)
        header = outer_tar.entry_header(name, size)
        self._out.write(header)
        while block := temporary.read(IO_BLOCK):
            self._out.write(block)
        trailer = outer_tar.entry_trailer(len(header), size)
        self._out.write(trailer)
        self.written += len(header) + size + len(trailer)

    def _report(self, done: int) -> None:
        if self._progress is not None:
            self._progress(done, max(self.total_estimate, done))

    def close(self) -> None:
        """Finish the backup (flush the output; it stays open)."""
        self._keys.shutdown(wait=True, cancel_futures=True)
        if not self.members:
            raise ValueError(f"a backup must contain at least {QUBES_XML}")
        self._out.flush()

    def abort(self) -> None:
        """Give up: drop pending key derivations (the caller discards the output)."""
        self._keys.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> BackupWriter:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
