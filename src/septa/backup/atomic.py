"""A destination file that only appears, under its final name, once complete: written
under a hidden temporary name in the same directory, fsynced and renamed at the end,
removed when the writing is interrupted. So a cancelled backup leaves nothing that looks
like a good backup."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_output(path: Path, *, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Open a binary file to write that becomes *path* when the ``with`` block ends
    normally; on any exception (KeyboardInterrupt too) it is removed and *path* is left
    as it was. An existing *path* is replaced only on success."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        temporary.rename(path)
    finally:
        temporary.unlink(missing_ok=True)
