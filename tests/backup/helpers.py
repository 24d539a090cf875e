"""Shared helpers for the backup tests: cheap scrypt parameters, sparse files, writing
a backup, and taking a backup's outer stream apart and back together."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from septa.backup import BackupWriter, ScryptParams, outer_tar

#: cheap parameters so tests derive keys in milliseconds
FAST = ScryptParams(log_n=10, r=8, p=1)
PASSPHRASE = "correct horse battery staple"

needs_scrypt = pytest.mark.skipif(shutil.which("scrypt") is None,
                                  reason="the scrypt command-line tool is not installed")


def sparse_file(path: Path, size: int, pieces: dict[int, bytes]) -> Path:
    """A file of *size* bytes, all holes except *pieces* (offset -> data)."""
    with path.open("wb") as out:
        out.truncate(size)
        for offset, data in pieces.items():
            out.seek(offset)
            out.write(data)
    return path


def make_backup(members: dict[str, bytes | Path], *, compression: str | None = "gzip",
                chunk_size: int = 64 * 1024, backup_id: str | None = None,
                passphrase: str = PASSPHRASE) -> bytes:
    """A whole backup in memory; bytes members via add_bytes, paths via add_file."""
    out = io.BytesIO()
    with BackupWriter(out, passphrase, compression_filter=compression, params=FAST,
                      chunk_size=chunk_size, backup_id=backup_id) as writer:
        for name, value in members.items():
            if isinstance(value, Path):
                writer.add_file(name, value)
            else:
                writer.add_bytes(name, value)
    return out.getvalue()


def split_entries(backup: bytes) -> list[tuple[str, bytes]]:
    """The outer stream's files, in order."""
    return [(entry.name, entry.read()) for entry in outer_tar.OuterReader(io.BytesIO(backup))]


def join_entries(entries: list[tuple[str, bytes]]) -> bytes:
    """An outer stream made of *entries*, laid out as the writer does."""
    out = io.BytesIO()
    for name, data in entries:
        outer_tar.write_entry(out, name, data)
    return out.getvalue()


def random_bytes(size: int) -> bytes:
    """Incompressible data, so chunks really are cut."""
    return os.urandom(size)
