"""Thin wrappers around ``qemu-img`` for the qcow2 copy-on-write layers of the file driver.

Every image is opened with its format given explicitly (never probed), backing files are
recorded with their format, and reads of images that a running QEMU may hold use
``--force-share``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from septa.storage.command import ToolError, run, tool_env
from septa.storage.copy import Progress
from septa.storage.model import DiskFormat

QEMU_IMG = "qemu-img"
_PERCENT = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


def create(path: Path, size: int, *, fmt: DiskFormat = "qcow2", backing: Path | None = None,
           backing_fmt: DiskFormat | None = None) -> None:
    """A new empty image; with ``backing``, a copy-on-write overlay of that image."""
    args = [QEMU_IMG, "create", "-q", "-f", fmt]
    if backing is not None:
        args += ["-b", str(backing), "-F", backing_fmt or "raw"]
    args += [str(path), str(size)]
    run(args)


def info(path: Path, fmt: DiskFormat) -> dict[str, Any]:
    out = run([QEMU_IMG, "info", "-U", "--output=json", "-f", fmt, str(path)])
    data: dict[str, Any] = json.loads(out)
    return data


def virtual_size(path: Path, fmt: DiskFormat) -> int:
    return int(info(path, fmt)["virtual-size"])


def commit(top: Path) -> None:
    """Write the data of the qcow2 overlay ``top`` into its backing image; ``top`` is kept."""
    run([QEMU_IMG, "commit", "-q", "-d", "-t", "writeback", "-f", "qcow2", str(top)])


def rebase_unsafe(path: Path, backing: Path, backing_fmt: DiskFormat) -> None:
    """Change the backing file named in ``path``'s header (the data must already match)."""
    run([QEMU_IMG, "rebase", "-q", "-u", "-f", "qcow2", "-b", str(backing), "-F", backing_fmt,
         str(path)])


def resize(path: Path, size: int, fmt: DiskFormat) -> None:
    run([QEMU_IMG, "resize", "-q", "-f", fmt, str(path), str(size)])


def convert(src: Path, src_fmt: DiskFormat, dst: Path, dst_fmt: DiskFormat, *,
            size: int | None = None, progress: Progress | None = None) -> None:
    """Write the whole view of ``src`` (its backing chain included) to a new image ``dst``.

    Zero blocks are left unallocated, so the result is sparse. ``size`` is only used to
    scale the progress reports.
    """
    args = [QEMU_IMG, "convert", "-t", "writeback", "-f", src_fmt, "-O", dst_fmt]
    if progress is None:
        run(args + [str(src), str(dst)])
        return
    total = size if size is not None else virtual_size(src, src_fmt)
    progress(0, total)
    try:
        proc = subprocess.Popen(args + ["-p", str(src), str(dst)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=tool_env())
    except FileNotFoundError as exc:
        raise ToolError(f"{QEMU_IMG} is not installed") from exc
    assert proc.stdout is not None and proc.stderr is not None
    buffer = b""
    while chunk := os.read(proc.stdout.fileno(), 4096):
        buffer += chunk
        *done, buffer = buffer.split(b"\r")
        for line in done:
            match = _PERCENT.search(line)
            if match:
                progress(min(total, int(total * float(match.group(1)) / 100)), total)
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise ToolError(f"qemu-img convert failed (exit {proc.returncode}): "
                        f"{err.decode(errors='replace').strip()}")
    progress(total, total)
