"""The caller's side of ``qubes.OpenInVM`` (Qubes' ``qopen-in-vm``), a local program of
``qrexec-client-vm``: its stdout goes to the service, its stdin comes from it.

``[--view-only] [--] FILE``: sends the name block of :mod:`septa.agent.file_editor`
(the file's last component, its tail if too long) and the file's data, closes stdout,
then reads what the service sends back: the edited file, which replaces ``FILE``
(through a temporary file in its directory, keeping its mode), or nothing when it was
not edited. When the directory is not writable, the edited file is saved in
``/tmp/file_edited_in_dvm.XXXXXX`` instead, and a message says so. With
``--view-only`` whatever comes back is discarded.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile

from . import qfile
from .file_editor import NAME_SIZE, VIEW_ONLY_PREFIX


def name_block(path: str, view_only: bool) -> bytes:
    """The name block for ``path``."""
    prefix = VIEW_ONLY_PREFIX if view_only else b""
    base = os.fsencode(os.path.basename(path))
    room = NAME_SIZE - len(prefix) - 1
    if len(base) > room:
        base = base[len(base) - room:]
    return (prefix + base).ljust(NAME_SIZE, b"\0")


def send(path: str, view_only: bool, out_fd: int) -> None:
    """Send the name block and the file, then close ``out_fd``."""
    with open(path, "rb") as f:
        qfile.write_all(out_fd, name_block(path, view_only))
        while data := f.read(qfile.CHUNK):
            qfile.write_all(out_fd, data)
    os.close(out_fd)


def receive(path: str, in_fd: int) -> None:
    """Replace ``path`` with what comes back, if anything comes back."""
    data = os.read(in_fd, qfile.CHUNK)
    if not data:
        return  # not edited (nothing is created before: a refused call is killed here)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", dir=directory)
        in_place = True
    except OSError:
        fd, temp = tempfile.mkstemp(prefix="file_edited_in_dvm.", dir="/tmp")
        in_place = False
    try:
        while data:
            qfile.write_all(fd, data)
            data = os.read(in_fd, qfile.CHUNK)
        if in_place:
            os.fchmod(fd, stat.S_IMODE(os.stat(path).st_mode))
    except BaseException:
        os.unlink(temp)
        raise
    finally:
        os.close(fd)
    if in_place:
        os.rename(temp, path)
    else:
        sys.stderr.write(
            f"The file {path} has been edited in a disposable qube and the modified content "
            "has been received, but this file is in read-only directory and thus cannot be "
            f"modified safely. The edited file has been saved to {temp}\n")


def main(argv: list[str] | None = None) -> int:
    """The local program; the exit status."""
    view_only, options, files = False, True, []
    for arg in sys.argv[1:] if argv is None else argv:
        if options and arg == "--":
            options = False
        elif options and arg == "--view-only":
            view_only = True
        else:
            files.append(arg)
    if len(files) != 1:
        sys.stderr.write("OpenInVM - no file given?\n")
        return 1
    try:
        send(files[0], view_only, 1)
        if view_only:
            while os.read(0, qfile.CHUNK):
                pass
        else:
            receive(files[0], 0)
    except OSError as exc:
        sys.stderr.write(f"qvm-open-in-vm: {files[0]}: {exc.strerror or exc}\n")
        return 1
    return 0
