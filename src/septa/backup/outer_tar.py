"""The outer layer of a backup: concatenated POSIX tar archives, one per file.

Qubes sends each file with ``tar -cO --posix -C <tmpdir> <path>``, so every file is a
complete archive of its own: a pax extended header ``<dir>/PaxHeaders/<base>`` (``.`` for
top-level files) holding ``mtime``/``atime``/``ctime``, the ustar header (mode 0644,
owner root), the data padded to 512 bytes, two zero blocks ending the archive, and zeros
up to the 10240-byte record. No directory entries. Readers go through the end-of-archive
blocks with ``tar -i`` (``--ignore-zeros``). :func:`write_entry` lays out the same bytes;
:class:`OuterReader` parses such a stream sequentially (a pipe is fine).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from septa.backup.errors import BackupFormatError

BLOCK = 512
RECORD = 20 * BLOCK
#: pax extended headers we write are ~100 bytes; refuse anything absurd from a stream
MAX_PAX_SIZE = 64 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*$")


def valid_name(name: str) -> bool:
    """Whether *name* is a relative path of plain components (no ``.``/``..``)."""
    return bool(_NAME.match(name)) and not any(
        part in (".", "..") for part in name.split("/"))


def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\0"


def _ustar(name: str, size: int, mtime: int, typeflag: bytes, *, owner: bool) -> bytes:
    prefix = ""
    if len(name.encode()) > 100:
        prefix, _, name = name.rpartition("/")
        if len(prefix) > 155 or len(name) > 100 or not prefix:
            raise ValueError(f"name too long for a ustar header: {prefix}/{name}")
    header = bytearray(BLOCK)
    header[0:100] = name.encode().ljust(100, b"\0")
    header[100:108] = _octal(0o644, 8)
    header[108:116] = _octal(0, 8)
    header[116:124] = _octal(0, 8)
    header[124:136] = _octal(size, 12)
    header[136:148] = _octal(mtime, 12)
    header[148:156] = b" " * 8
    header[156:157] = typeflag
    header[257:265] = b"ustar\x0000"
    if owner:
        header[265:297] = b"root".ljust(32, b"\0")
        header[297:329] = b"root".ljust(32, b"\0")
        header[329:337] = _octal(0, 8)
        header[337:345] = _octal(0, 8)
    header[345:500] = prefix.encode().ljust(155, b"\0")
    checksum = sum(header)
    header[148:156] = f"{checksum:06o}".encode() + b"\0 "
    return bytes(header)


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return f"{length}{body}".encode()


def entry_header(name: str, size: int, when: float | None = None) -> bytes:
    """The bytes before the data of one file's archive (pax header + ustar header)."""
    if not valid_name(name):
        raise ValueError(f"invalid archive member name {name!r}")
    when = time.time() if when is None else when
    stamp = f"{int(when)}.{int(when % 1 * 1e9):09d}".rstrip("0").rstrip(".")
    pax = b"".join(_pax_record(key, stamp) for key in ("mtime", "atime", "ctime"))
    directory, _, base = name.rpartition("/")
    pax_name = f"{directory or '.'}/PaxHeaders/{base}"
    return (_ustar(pax_name, len(pax), int(when), b"x", owner=False) + pax + bytes(_pad(len(pax)))
            + _ustar(name, size, int(when), b"0", owner=True))


def entry_trailer(header_size: int, size: int) -> bytes:
    """The bytes after *size* bytes of data that followed a header of *header_size*
    bytes: block padding, the end-of-archive blocks, padding to the 10240-byte record."""
    used = header_size + size + _pad(size) + 2 * BLOCK
    return bytes(_pad(size) + 2 * BLOCK + -used % RECORD)


def write_entry(out: BinaryIO, name: str, data: bytes) -> int:
    """Write *data* as one complete archive named *name*; returns bytes written."""
    header = entry_header(name, len(data))
    blob = header + data + entry_trailer(len(header), len(data))
    out.write(blob)
    return len(blob)


def archive_size(name: str, size: int) -> int:
    """Bytes the archive of one *size*-byte file named *name* takes in the stream."""
    header = len(entry_header(name, size, 0))
    return header + size + len(entry_trailer(header, size))


class Entry:
    """One file of the outer stream; read its data with :meth:`read` before the next."""

    def __init__(self, reader: OuterReader, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self._reader = reader
        self._left = size

    def read(self, size: int = -1) -> bytes:
        """Read up to *size* bytes of this entry's data (all that is left if negative)."""
        if self._left <= 0:
            return b""
        want = self._left if size < 0 else min(size, self._left)
        data = self._reader.read_some(want)
        if not data:
            raise BackupFormatError(
                f"the backup stream ends inside {self.name} ({self._left} bytes missing)")
        self._left -= len(data)
        return data

    def discard(self) -> None:
        """Skip the rest of the data."""
        while self._left > 0:
            self.read(1 << 20)


@dataclass(frozen=True)
class _Header:
    name: str
    size: int
    typeflag: bytes


def _parse_number(field: bytes) -> int:
    if field and field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise BackupFormatError(f"invalid number {field!r} in a tar header") from None


def _parse_pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    while data:
        length_text, space, _ = data.partition(b" ")
        if not space or not length_text.isdigit() or not 0 < int(length_text) <= len(data):
            raise BackupFormatError("invalid pax extended header in the backup stream")
        record, data = data[:int(length_text)], data[int(length_text):]
        key, _, value = record[len(length_text) + 1:].rstrip(b"\n").partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return records


def _parse_header(block: bytes, offset: int) -> _Header:
    stored = _parse_number(block[148:156])
    computed = sum(block[:148]) + 8 * 32 + sum(block[156:])
    if stored != computed:
        raise BackupFormatError(f"corrupt tar header at offset {offset} of the backup stream "
                                f"(checksum mismatch)")
    if block[257:262] != b"ustar":
        raise BackupFormatError(f"not a POSIX tar header at offset {offset} of the backup "
                                f"stream")
    name = block[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
    prefix = block[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
    if prefix and block[257:263] == b"ustar\0":
        name = f"{prefix}/{name}"
    return _Header(name, _parse_number(block[124:136]), block[156:157])


class OuterReader:
    """Sequential parser of the outer stream: iterate to get each file's :class:`Entry`.
    Zero blocks between archives are skipped like ``tar -i``; directory entries and
    pax global headers are ignored; any other non-regular entry is an error."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        #: bytes consumed from the stream so far
        self.offset = 0

    def read_some(self, size: int) -> bytes:
        """Read at most *size* bytes from the stream (b"" only at its end)."""
        data = self._stream.read(size)
        self.offset += len(data)
        return data

    def _read_exactly(self, size: int, what: str) -> bytes:
        data = b""
        while len(data) < size:
            more = self.read_some(size - len(data))
            if not more:
                raise BackupFormatError(f"the backup stream ends inside {what}")
            data += more
        return data

    def _next_block(self) -> bytes | None:
        first = self.read_some(BLOCK)
        if not first:
            return None
        return first + self._read_exactly(BLOCK - len(first), "a tar header")

    def __iter__(self) -> Iterator[Entry]:
        pax: dict[str, str] = {}
        while True:
            block = self._next_block()
            if block is None:
                if pax:
                    raise BackupFormatError("the backup stream ends after a pax header")
                return
            if block == bytes(BLOCK):
                continue
            header = _parse_header(block, self.offset - BLOCK)
            size = int(pax.get("size", header.size))
            if header.typeflag in (b"x", b"g"):
                if size > MAX_PAX_SIZE:
                    raise BackupFormatError("oversized pax header in the backup stream")
                records = _parse_pax(self._read_exactly(size + _pad(size), "a pax header")[:size])
                if header.typeflag == b"x":
                    pax = records
                continue
            name = pax.get("path", header.name)
            pax = {}
            if header.typeflag == b"5":
                self._read_exactly(size + _pad(size), name)
                continue
            if header.typeflag not in (b"0", b"\0"):
                raise BackupFormatError(f"unexpected tar entry type {header.typeflag!r} for "
                                        f"{name!r} in the backup stream")
            entry = Entry(self, name, size)
            yield entry
            entry.discard()
            self._read_exactly(_pad(size), f"the padding of {name}")


def _pad(size: int) -> int:
    return -size % BLOCK
