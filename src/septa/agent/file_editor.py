"""``qubes.OpenInVM``: open a file sent by another qube, and send it back if edited
(Qubes' ``vm-file-editor``).

The caller (:mod:`septa.agent.open_sender`) sends a block of :data:`NAME_SIZE` bytes:
the file's name, NUL-padded, prefixed with ``view-only-`` for a read-only view; then
the file's data, then EOF. The name is sanitised (characters other than
``[A-Za-z0-9._+@-]`` become ``_``; a ``/`` is refused) and the file is saved under it in
a new directory ``/tmp/<source qube>-XXXXXX`` (mode 0600; 0400 for a view), opened
with the qube's handler (:mod:`septa.agent.opener`) and, once the handler has exited,
sent back on stdout if its modification time or size changed. The file and the
directory are removed at the end.
"""

from __future__ import annotations

import os
import sys
import tempfile

from . import opener, qfile

NAME_SIZE = 256
VIEW_ONLY_PREFIX = b"view-only-"
_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-+@")


class EditorError(Exception):
    """The file cannot be received or opened."""


def parse_name_block(block: bytes) -> tuple[str, bool]:
    """(sanitised file name, view only) from the name block."""
    name = block[: NAME_SIZE - 1].split(b"\0", 1)[0]
    view_only = name.startswith(VIEW_ONLY_PREFIX)
    if view_only:
        name = name[len(VIEW_ONLY_PREFIX):]
    if b"/" in name:
        raise EditorError("filename contains /")
    clean = bytes(b if b in _NAME_CHARS else 0x5F for b in name).decode("ascii")
    if clean in ("", ".", ".."):
        raise EditorError(f"invalid file name {clean!r}")
    return clean, view_only


def _state(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def edit(in_fd: int, out_fd: int, source: str, tmp_dir: str = "/tmp") -> int:
    """Receive, open, and send back if edited; the exit status."""
    if not source or "/" in source or source in (".", ".."):
        raise EditorError(f"Invalid remote domain name: {source}")
    block = qfile.read_exactly(in_fd, NAME_SIZE)
    if block is None:
        raise EditorError("no file name received")
    name, view_only = parse_name_block(block)
    directory = tempfile.mkdtemp(prefix=f"{source}-", dir=tmp_dir)
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            while data := os.read(in_fd, qfile.CHUNK):
                qfile.write_all(fd, data)
        finally:
            os.close(fd)
        if view_only:
            os.chmod(path, 0o400)
        before = _state(path)
        status = opener.open_path(path)
        if status:
            os.write(2, f"Unable to handle mimetype of the requested file (exit status: "
                        f"{status})!\n".encode())
        if _state(path) != before:
            with open(path, "rb") as f:
                while data := f.read(qfile.CHUNK):
                    qfile.write_all(out_fd, data)
        return 1 if status else 0
    finally:
        for leftover in (path, directory):
            try:
                (os.rmdir if leftover == directory else os.unlink)(leftover)
            except OSError:
                pass


def main() -> int:
    """The service: stdin and stdout are the caller's."""
    try:
        return edit(0, 1, os.environ.get("QREXEC_REMOTE_DOMAIN", ""))
    except EditorError as exc:
        sys.stderr.write(f"qubes.OpenInVM: {exc}\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"qubes.OpenInVM: {exc}\n")
        return 1
