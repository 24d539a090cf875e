"""The receiving end of a file copy (Qubes' ``qfile-unpacker``), and ``qubes.Filecopy``.

:class:`Unpacker` reads the stream of :mod:`septa.agent.qfile` and recreates its files,
directories and symbolic links under one directory, given as an open file descriptor,
then answers with the result header. Nothing from the stream is trusted:

- every name must pass :func:`~septa.agent.qfile_names.validate_file_name`, every link
  :func:`~septa.agent.qfile_names.validate_symlink` (no ``..``, no absolute names, no
  link that points out of its top-level directory, only displayable characters unless
  all names are allowed);
- a name is resolved one directory at a time with ``O_NOFOLLOW``, so a link received
  earlier (or planted) is never followed;
- a file is written into an anonymous ``O_TMPFILE`` and linked under its name only
  once complete (where the file system has no ``O_TMPFILE``: created exclusively and
  removed again on failure), so a failed copy leaves no partial file;
- a file is refused before its data is read when it exists already, or when it would
  leave less than :data:`RESERVE` bytes free on the file system; a write that fails
  (``ENOSPC``, ``EDQUOT``) ends the copy the same way;
- modes keep the permission bits only (no setuid, setgid or sticky bit); times are
  applied as sent (to links too). Directories are created ``rwx`` for the user and get
  their mode and times when they are sent the second time, after their contents.

The first error ends the copy: the answer carries its errno value and the name concerned.

The service (:func:`service_main`) unpacks into ``~/QubesIncoming/<source qube>/``
(``QREXEC_REMOTE_DOMAIN``); its argument ``allow-all-names`` lifts the character rules.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import zlib

from . import qfile
from .qfile_names import (
    ALLOW_NON_CANONICAL_SYMLINKS,
    ALLOW_UNSAFE_CHARACTERS,
    ALLOW_UNSAFE_SYMLINKS,
    validate_file_name,
    validate_symlink,
)

#: Bytes a received file must leave free on its file system.
RESERVE = 1024 * 1024
INCOMING_DIR = "QubesIncoming"
_MAX_NSEC = 999_999_999
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY


class Stop(Exception):
    """The copy ends with this error code, about this name."""

    def __init__(self, code: int, name: bytes | None) -> None:
        super().__init__(code, name)
        self.code = code
        self.name = name


def _fail(exc: OSError, name: bytes | None) -> Stop:
    return Stop(exc.errno or errno.EIO, name)


class Unpacker:
    """Unpacks one stream from ``in_fd`` under the directory ``root_fd``, answering on
    ``out_fd``."""

    def __init__(self, in_fd: int, out_fd: int, root_fd: int, allow_all_names: bool = False,
                 allow_unsafe_symlinks: bool = False, reserve: int = RESERVE) -> None:
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.root_fd = root_fd
        self.flags = ALLOW_NON_CANONICAL_SYMLINKS
        if allow_all_names:
            self.flags |= ALLOW_UNSAFE_CHARACTERS
        if allow_unsafe_symlinks:
            self.flags |= ALLOW_UNSAFE_SYMLINKS
        self.reserve = reserve
        self.crc = 0
        self.last_name = b""
        self.use_tmpfile = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")

    def run(self) -> int:
        """Unpack the whole stream and answer; the error code (0: all done)."""
        code: int
        name: bytes | None
        try:
            self._unpack()
            code, name = 0, self.last_name
        except Stop as stop:
            code, name = stop.code, stop.name
        os.sync()
        try:
            qfile.write_all(self.out_fd, qfile.encode_result(code, self.crc, name))
        except OSError:
            pass  # the sender went away
        return code

    # --- the stream ----------------------------------------------------------------------

    def _read(self, size: int, name: bytes | None) -> bytes:
        data = qfile.read_exactly(self.in_fd, size)
        if data is None:
            raise Stop(qfile.LEGAL_EOF, name)
        self.crc = zlib.crc32(data, self.crc)
        return data

    def _unpack(self) -> None:
        while True:
            raw = qfile.read_exactly(self.in_fd, qfile.FILE_HEADER.size)
            if raw is None:
                raise Stop(errno.EREMOTEIO, self.last_name)
            self.crc = zlib.crc32(raw, self.crc)
            header = qfile.FileHeader.decode(raw)
            if header.namelen == 0:
                return
            if header.namelen > qfile.MAX_PATH_LENGTH - 1:
                raise Stop(errno.ENAMETOOLONG, None)
            name = self._read(header.namelen, None)
            if name.endswith(b"\0"):
                name = name[:-1]
            self.last_name = name
            if b"\0" in name:
                raise Stop(errno.EILSEQ, name)
            mode = header.mode
            if stat.S_ISREG(mode):
                self._file(header, name)
            elif stat.S_ISLNK(mode):
                self._symlink(header, name)
            elif stat.S_ISDIR(mode):
                self._directory(header, name)
            else:
                raise Stop(errno.EINVAL, name)

    # --- the file system -----------------------------------------------------------------

    def _check_name(self, name: bytes) -> None:
        result = validate_file_name(name, self.flags)
        if result:
            raise Stop(-result, name)

    def _open_parent(self, name: bytes) -> tuple[int, bytes]:
        """The directory that holds ``name`` (opened without following any link; the
        caller closes it unless it is the root) and the last component."""
        *parents, last = name.split(b"/")
        fd = self.root_fd
        for component in parents:
            try:
                new_fd = os.open(component, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _fail(exc, component) from None
            finally:
                if fd != self.root_fd:
                    os.close(fd)
            fd = new_fd
        return fd, last

    def _close_parent(self, fd: int) -> None:
        if fd != self.root_fd:
            os.close(fd)

    def _times(self, header: qfile.FileHeader, name: bytes) -> tuple[int, int]:
        """(atime, mtime) of the header in nanoseconds."""
        if header.atime_nsec > _MAX_NSEC or header.mtime_nsec > _MAX_NSEC:
            raise Stop(errno.EINVAL, name)
        return (header.atime * 10**9 + header.atime_nsec,
                header.mtime * 10**9 + header.mtime_nsec)

    def _apply(self, fd: int, header: qfile.FileHeader, name: bytes) -> None:
        """Mode (permission bits only) and times of the header."""
        times = self._times(header, name)
        try:
            os.fchmod(fd, header.mode & 0o777)
            os.utime(fd, ns=times)
        except OSError as exc:
            raise _fail(exc, name) from None

    def _directory(self, header: qfile.FileHeader, name: bytes) -> None:
        self._check_name(name)
        parent, last = self._open_parent(name)
        try:
            try:
                os.mkdir(last, 0o700, dir_fd=parent)
                return
            except FileExistsError:
                pass  # the second time: apply its mode and times
            except OSError as exc:
                raise _fail(exc, name) from None
            try:
                fd = os.open(last, _DIR_FLAGS, dir_fd=parent)
            except OSError as exc:
                raise _fail(exc, name) from None
            try:
                self._apply(fd, header, name)
            finally:
                os.close(fd)
        finally:
            self._close_parent(parent)

    def _symlink(self, header: qfile.FileHeader, name: bytes) -> None:
        if header.filelen > qfile.MAX_PATH_LENGTH - 1:
            raise Stop(errno.ENAMETOOLONG, name)
        target = self._read(header.filelen, name)
        if b"\0" in target:
            raise Stop(errno.EILSEQ, name)
        result = validate_symlink(name, target, self.flags)
        if result:
            raise Stop(-result, target if result == -errno.ENOLINK else name)
        times = self._times(header, name)
        parent, last = self._open_parent(name)
        try:
            os.symlink(target, last, dir_fd=parent)
            os.utime(last, ns=times, dir_fd=parent, follow_symlinks=False)
        except OSError as exc:
            raise _fail(exc, name) from None
        finally:
            self._close_parent(parent)

    def _file(self, header: qfile.FileHeader, name: bytes) -> None:
        self._check_name(name)
        size = header.filelen
        if size > 2**63 - 1:
            raise Stop(errno.EDQUOT, name)
        parent, last = self._open_parent(name)
        try:
            self._check_room(parent, last, size, name)
            fd, linked = self._create(parent, last, name)
            try:
                self._copy(fd, size, name)
                if not linked:
                    self._link(fd, parent, last, name)
                    linked = True
                self._apply(fd, header, name)
            except BaseException:
                if linked:
                    try:
                        os.unlink(last, dir_fd=parent)
                    except OSError:
                        pass
                raise
            finally:
                os.close(fd)
        finally:
            self._close_parent(parent)

    def _check_room(self, parent: int, last: bytes, size: int, name: bytes) -> None:
        try:
            os.stat(last, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _fail(exc, name) from None
        else:
            raise Stop(errno.EEXIST, name)
        if size:
            try:
                fs = os.fstatvfs(parent)
            except OSError as exc:
                raise _fail(exc, name) from None
            if size + self.reserve > fs.f_bavail * fs.f_frsize:
                raise Stop(errno.ENOSPC, name)

    def _create(self, parent: int, last: bytes, name: bytes) -> tuple[int, bool]:
        """A new file for ``name``: (fd, whether it has its name already)."""
        if self.use_tmpfile:
            try:
                return os.open(".", os.O_WRONLY | os.O_TMPFILE | os.O_CLOEXEC | os.O_NOCTTY,
                               0o700, dir_fd=parent), False
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.ENOENT):
                    raise _fail(exc, name) from None
                self.use_tmpfile = False
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(last, flags | os.O_NOCTTY, 0o600, dir_fd=parent), True
        except OSError as exc:
            raise _fail(exc, name) from None

    def _link(self, fd: int, parent: int, last: bytes, name: bytes) -> None:
        try:
            os.link(f"/proc/self/fd/{fd}", last, dst_dir_fd=parent, follow_symlinks=True)
        except OSError as exc:
            raise _fail(exc, name) from None

    def _copy(self, fd: int, size: int, name: bytes) -> None:
        while size > 0:
            try:
                data = os.read(self.in_fd, min(size, qfile.CHUNK * 4))
            except OSError:
                data = b""
            if not data:
                raise Stop(qfile.LEGAL_EOF, name)
            self.crc = zlib.crc32(data, self.crc)
            size -= len(data)
            try:
                qfile.write_all(fd, data)
            except OSError as exc:
                raise _fail(exc, name) from None


def incoming_dir(home: str, source: str) -> str:
    """``~/QubesIncoming/<source>``, made (mode 0700) if missing."""
    if not source or "/" in source or source in (".", "..") or "\0" in source:
        raise ValueError(f"invalid remote domain name: {source!r}")
    top = os.path.join(home, INCOMING_DIR)
    path = os.path.join(top, source)
    for directory in (top, path):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
    return path


def service_main(argv: list[str] | None = None) -> int:
    """``qubes.Filecopy[+allow-all-names]``: unpack stdin into the incoming directory."""
    args = sys.argv[1:] if argv is None else argv
    allow_all_names = False
    if args == ["allow-all-names"]:
        allow_all_names = True
    elif args and args != [""]:
        sys.stderr.write(f"Unexpected argument {args[0]}\n")
        return 1
    source = os.environ.get("QREXEC_REMOTE_DOMAIN")
    if source is None:
        sys.stderr.write("qfile-unpacker: Cannot get remote domain name\n")
        return 1
    home = os.environ.get("HOME") or os.path.expanduser("~")
    try:
        path = incoming_dir(home, source)
        root = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"qfile-unpacker: cannot use the incoming directory: {exc}\n")
        code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EINVAL
        qfile.write_all(1, qfile.encode_result(code, 0, None))
        return 1
    try:
        code = Unpacker(0, 1, root, allow_all_names=allow_all_names).run()
    finally:
        os.close(root)
    return min(code, 255)
