"""The sending end of a file copy (Qubes' ``qfile-agent``).

:class:`Packer` writes files, directories (recursively) and symbolic links in the stream
of :mod:`septa.agent.qfile` to ``out_fd``, reading nothing into memory but one chunk at a
time, and reads the receiver's answer from ``in_fd``. The receiver answers only once:
at its first error or after the end marker. So the packer looks for an answer (without
waiting) after each chunk and each file, and stops at once with the receiver's error
instead of sending the rest into the void; at the end it waits for the answer and
checks the receiver's CRC-32 against its own.

Each command line argument is sent under its last component (``/a/b/dir`` as ``dir``,
its contents as ``dir/...``). Devices, fifos and sockets are skipped; with
``--ignore-symlinks`` so are symbolic links.

:func:`main` is the local program of ``qvm-copy`` (run by ``qrexec-client-vm``, so its
stdout goes to the receiving service and its stdin comes from it); it reports progress
on stderr when ``PROGRESS_TYPE=console`` and ``FILECOPY_TOTAL_BYTES`` are set.
"""

from __future__ import annotations

import os
import select
import stat
import sys
import zlib

from . import qfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

#: Progress is reported at least every this many bytes (Qubes' PROGRESS_NOTIFY_DELTA).
PROGRESS_DELTA = 15_000_000


class CopyError(Exception):
    """The copy failed; the message says why (for the user)."""


class Packer:
    """One stream: :meth:`pack` each path, then :meth:`finish`."""

    def __init__(self, out_fd: int, in_fd: int, ignore_symlinks: bool = False,
                 progress: Callable[[int, bool], None] | None = None) -> None:
        self.out_fd = out_fd
        self.in_fd = in_fd
        self.ignore_symlinks = ignore_symlinks
        self.progress = progress
        self.crc = 0
        self.sent = 0
        self._reported = 0

    # --- the answer ----------------------------------------------------------------------

    def check_answer(self, wait: bool = False) -> None:
        """Raise :class:`CopyError` if the receiver has answered with an error (or, with
        ``wait``, wait for the answer and check it)."""
        if not wait:
            try:
                ready, _, _ = select.select([self.in_fd], [], [], 0)
            except (OSError, ValueError):
                return
            if not ready:
                return
        raw = qfile.read_exactly(self.in_fd, qfile.RESULT_HEADER.size)
        if raw is None:
            raise CopyError("File copy: the receiving qube ended the copy without an answer")
        code, _, crc = qfile.RESULT_HEADER.unpack(raw)
        last_name = b""
        ext = qfile.read_exactly(self.in_fd, qfile.RESULT_EXT.size)
        if ext is not None:
            (length,) = qfile.RESULT_EXT.unpack(ext)
            last_name = qfile.read_exactly(self.in_fd, min(length, qfile.MAX_PATH_LENGTH)) or b""
        if code:
            raise CopyError(qfile.result_message(code, last_name))
        if crc != self.crc:
            raise CopyError("File transfer failed: checksum mismatch")
        if not wait:
            raise CopyError("File copy: the receiving qube answered before the end")

    # --- sending -------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        self.crc = zlib.crc32(data, self.crc)
        try:
            qfile.write_all(self.out_fd, data)
        except OSError as exc:
            self.check_answer(wait=True)  # the receiver's reason, if it gave one
            raise CopyError(f"File copy: cannot send: {exc.strerror}") from None

    def _header(self, name: bytes, st: os.stat_result, filelen: int) -> None:
        self._send(qfile.FileHeader.for_stat(name, st, filelen).encode() + name + b"\0")

    def _count(self, size: int, done: bool = False) -> None:
        self.sent += size
        if self.progress is not None and (
                done or self.sent - self._reported > PROGRESS_DELTA):
            self.progress(self.sent, done)
            self._reported = self.sent

    def pack(self, path: str) -> None:
        """Send ``path`` (a file, a link, or a directory with everything in it)."""
        if not path:
            raise CopyError("Invalid empty argument")
        trimmed = path.rstrip("/") or "/"
        directory, base = os.path.split(trimmed)
        if base in ("", ".", ".."):
            raise CopyError(f"Refusing to copy {path!r}: use a name, not . or .. or /")
        self._walk(os.fsencode(base), os.fsencode(os.path.join(directory or ".", base)))

    def _walk(self, name: bytes, path: bytes) -> None:
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise CopyError(f"stat {os.fsdecode(path)}: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode) and self.ignore_symlinks:
            return
        self._one(name, path, st)
        if not stat.S_ISDIR(st.st_mode):
            return
        try:
            entries = sorted(os.listdir(path))
        except OSError as exc:
            raise CopyError(f"opendir {os.fsdecode(path)}: {exc.strerror}") from None
        for entry in entries:
            self._walk(name + b"/" + entry, path + b"/" + entry)
        self._one(name, path, st)  # again: the receiver applies its mode and times now

    def _one(self, name: bytes, path: bytes, st: os.stat_result) -> None:
        mode = st.st_mode
        if stat.S_ISREG(mode):
            self._file(name, path, st)
        elif stat.S_ISDIR(mode):
            self._header(name, st, 0)
        elif stat.S_ISLNK(mode):
            try:
                target = os.readlink(path)
            except OSError as exc:
                raise CopyError(f"readlink {os.fsdecode(path)}: {exc.strerror}") from None
            self._header(name, st, len(target))
            self._send(target)
        else:
            return
        self.check_answer()

    def _file(self, name: bytes, path: bytes, st: os.stat_result) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            raise CopyError(f"open {os.fsdecode(path)}: {exc.strerror}") from None
        try:
            self._header(name, st, st.st_size)
            left = st.st_size
            while left > 0:
                try:
                    data = os.read(fd, min(left, qfile.CHUNK * 4))
                except OSError as exc:
                    raise CopyError(f"Copying file {os.fsdecode(path)}: "
                                    f"{exc.strerror}") from None
                if not data:
                    raise CopyError(f"Copying file {os.fsdecode(path)}: "
                                    "the file shrank while being copied")
                self._send(data)
                left -= len(data)
                self._count(len(data))
                self.check_answer()
        finally:
            os.close(fd)

    def finish(self) -> None:
        """Send the end marker and check the receiver's answer."""
        self._send(qfile.FileHeader().encode())
        self.check_answer(wait=True)
        self._count(0, done=True)


def console_progress(total: int) -> Callable[[int, bool], None]:
    """Qubes' console progress: ``sent N/M KB`` on stderr, on one line."""
    def report(sent: int, done: bool) -> None:
        line = f"sent {(sent + 1023) // 1024}/{(total + 1023) // 1024} KB\r"
        try:
            os.write(2, (line + ("\n" if done else "")).encode())
        except OSError:
            pass
    return report


def main(argv: list[str] | None = None) -> int:
    """``[--ignore-symlinks] [--] PATH...``: send the paths on stdout; the exit status."""
    args = sys.argv[1:] if argv is None else argv
    ignore_symlinks = False
    paths: list[str] = []
    options = True
    for arg in args:
        if options and arg == "--ignore-symlinks":
            ignore_symlinks = True
        elif options and arg == "--":
            options = False
        else:
            paths.append(arg)
    progress = None
    total = os.environ.get("FILECOPY_TOTAL_BYTES", "")
    if os.environ.get("PROGRESS_TYPE") == "console" and total.isdigit():
        progress = console_progress(int(total))
    packer = Packer(1, 0, ignore_symlinks, progress)
    try:
        for path in paths:
            packer.pack(path)
        packer.finish()
    except CopyError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0
