"""A destination file that only appears, under its final name, once complete: written
under a hidden temporary name in the same directory, fsynced and renamed at the end,
removed when the writing is interrupted. So a cancelled backup leaves nothing that looks
like a good backup. (The storage layer's :func:`~septa.storage.fsutil.replacing` does
exactly this; the backup library offers it under its own name.)"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

from septa.storage.fsutil import replacing


def atomic_output(path: Path, *, mode: int = 0o600) -> AbstractContextManager[BinaryIO]:
    """Open a binary file to write that becomes *path* when the ``with`` block ends
    normally; on any exception (KeyboardInterrupt too) it is removed and *path* is left
    as it was. An existing *path* is replaced only on success."""
    return replacing(path, mode)
