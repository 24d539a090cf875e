"""The file copy stream of ``qubes.Filecopy`` (Qubes' qfile format), both directions.

The sender writes, for each file, directory and symbolic link, a header (little endian,
32 bytes)::

    struct file_header { u32 namelen; u32 mode; u64 filelen;
                         u32 atime; u32 atime_nsec; u32 mtime; u32 mtime_nsec; };

then the name (``namelen`` bytes, the last one NUL), then ``filelen`` bytes: the data
of a regular file, the target of a link (no NUL), nothing for a directory. A directory
is sent before its contents and again after them (the second time its mode and times
are applied). A header with ``namelen`` 0 ends the stream.

The receiver answers once, at the end or at the first error::

    struct result_header { u32 error_code; u32 _pad; u64 crc32; };
    struct result_header_ext { u32 last_namelen; char last_name[last_namelen]; };

``error_code`` is an errno value (0: success; :data:`LEGAL_EOF`: the stream ended
early) and ``crc32`` the CRC-32 (zlib's) of every byte the receiver read, which the
sender compares with its own; the name is that of the last file handled.
"""

from __future__ import annotations

import errno
import os
import struct

from .qfile_names import display

FILE_HEADER = struct.Struct("<IIQIIII")
RESULT_HEADER = struct.Struct("<IIQ")
RESULT_EXT = struct.Struct("<I")
#: Longest name (and link target) a receiver accepts, its NUL included.
MAX_PATH_LENGTH = 16384
#: The error code of a stream that ended before its end marker (Qubes' value).
LEGAL_EOF = 31415926
#: Stream I/O is done in pieces of this size.
CHUNK = 65536


class FileHeader:
    """One header of the stream."""

    __slots__ = ("namelen", "mode", "filelen", "atime", "atime_nsec", "mtime", "mtime_nsec")

    def __init__(self, namelen: int = 0, mode: int = 0, filelen: int = 0, atime: int = 0,
                 atime_nsec: int = 0, mtime: int = 0, mtime_nsec: int = 0) -> None:
        self.namelen = namelen
        self.mode = mode
        self.filelen = filelen
        self.atime = atime
        self.atime_nsec = atime_nsec
        self.mtime = mtime
        self.mtime_nsec = mtime_nsec

    @classmethod
    def for_stat(cls, name: bytes, st: os.stat_result, filelen: int) -> FileHeader:
        """The header of ``name`` (not NUL-terminated) as ``st`` describes it."""
        return cls(len(name) + 1, st.st_mode, filelen,
                   int(st.st_atime_ns // 10**9) & 0xFFFFFFFF, st.st_atime_ns % 10**9,
                   int(st.st_mtime_ns // 10**9) & 0xFFFFFFFF, st.st_mtime_ns % 10**9)

    @classmethod
    def decode(cls, data: bytes) -> FileHeader:
        return cls(*FILE_HEADER.unpack(data))

    def encode(self) -> bytes:
        return FILE_HEADER.pack(self.namelen, self.mode, self.filelen, self.atime,
                                self.atime_nsec, self.mtime, self.mtime_nsec)


def encode_result(code: int, crc: int, last_name: bytes | None) -> bytes:
    """The receiver's answer."""
    data = RESULT_HEADER.pack(code & 0xFFFFFFFF, 0, crc)
    if last_name is not None:
        data += RESULT_EXT.pack(len(last_name)) + last_name
    return data


def result_message(code: int, last_name: bytes) -> str:
    """What the sender says of a receiver's error ``code`` (Qubes' messages)."""
    name = display(last_name)
    if code == errno.EEXIST:
        return f'A file named "{name}" already exists in QubesIncoming dir'
    if code == errno.EINVAL:
        return f'File copy: Corrupted data from packer{"; Last file: " if name else ""}"{name}"'
    if code == errno.EILSEQ:
        return ("Forbidden character in file or link target. Name might look somewhat "
                f'like "{name}"')
    if code == errno.ENOLINK:
        return f'Cannot verify that link at "{name}" would not be broken by copy'
    if code == LEGAL_EOF:
        reason = "the stream ended early"
    else:
        try:
            reason = os.strerror(code)
        except ValueError:
            reason = f"error {code}"
    return f'File copy: "{reason}{"; Last file: " if name else ""}{name}"'


def read_exactly(fd: int, size: int) -> bytes | None:
    """``size`` bytes from ``fd``; None at end of file (or on a read error) before that."""
    parts = []
    while size > 0:
        try:
            data = os.read(fd, min(size, CHUNK))
        except OSError:
            return None
        if not data:
            return None
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (OSError on failure)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
