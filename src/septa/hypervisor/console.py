"""Reading the tail of a qube's console log, for start errors and debugging."""

from __future__ import annotations

from pathlib import Path


def console_tail(path: Path, lines: int = 20, max_bytes: int = 16384) -> str:
    """The last ``lines`` lines of the log (control characters dropped), or ``""``."""
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(0, size - max_bytes))
            data = log.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").replace("\r", "")
    clean = "".join(c for c in text if c == "\n" or c == "\t" or c >= " ")
    return "\n".join(clean.splitlines()[-lines:])
