"""The backup stream reader (Qubes backup format 4), sequential, from a file or a pipe.

Opening a :class:`BackupReader` reads and authenticates ``backup-header`` (its
``.hmac`` decrypted with ``"backup-header!" + passphrase`` must equal it: a wrong
passphrase is a :class:`~septa.backup.errors.BackupPassphraseError`). Then
:meth:`BackupReader.members` yields the members in stream order, ``qubes.xml`` first;
for each the caller chooses :meth:`Member.extract` (into a staging directory, sparse
files kept sparse), :meth:`Member.read_bytes`, :meth:`Member.verify` or
:meth:`Member.skip` (the default when it moves on without choosing).

Every chunk of a member must come in order (``.000.enc``, ``.001.enc``...) and decrypt
under its own name-bound passphrase, then the member's reassembled (decompressed) inner
archive must extract (or list, to verify) completely; otherwise a
:class:`~septa.backup.errors.MemberError` names the member and the problem. Each chunk is
decrypted into a temporary file and handed on only after its HMAC matched, but a member
whose later chunk fails has already been partly extracted: **after any error the staging
directory must be discarded**, and the reader is not usable further.

The format has no list of members: a member left out whole is not an error here. The
caller checks :attr:`BackupReader.seen` against what ``qubes.xml`` says was backed up.
"""

from __future__ import annotations

import dataclasses
import io
import re
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, BinaryIO

from septa.backup import scrypt_file
from septa.backup.errors import (
    BackupFormatError,
    BackupPassphraseError,
    MemberError,
    ScryptError,
    WrongPassphraseError,
)
from septa.backup.header import KNOWN_FILTERS, MAX_HEADER_SIZE, BackupHeader
from septa.backup.outer_tar import Entry, OuterReader, valid_name
from septa.backup.scrypt_file import Limits
from septa.backup.writer import (
    CHUNK_SIZE,
    HEADER_NAME,
    QUBES_XML,
    chunk_passphrase,
    header_passphrase,
)

IO_BLOCK = 1 << 20
_CHUNK = re.compile(r"^(?P<member>.+)\.(?P<index>[0-9]{3,})\.enc$")


def split_chunk_name(name: str) -> tuple[str, int]:
    """``vm3/private.img.001.enc`` -> (``vm3/private.img``, 1); BackupFormatError if the
    name is not a chunk name."""
    match = _CHUNK.match(name)
    if match is None or not valid_name(match["member"]):
        raise BackupFormatError(f"unexpected file {name!r} in the backup (not an encrypted "
                                f"chunk <path>.NNN.enc)")
    return match["member"], int(match["index"])


class _TarSink:
    """Receives a member's plaintext inner stream and runs GNU tar on it (through the
    decompression filter): extract *member* into *dest*, or list it (verify)."""

    def __init__(self, member: str, dest: Path | None, compression_filter: str | None) -> None:
        self.member = member
        command = ["tar", "-x" if dest is not None else "-t", "-f", "-"]
        if dest is not None:
            command += ["-C", str(dest), "--no-same-owner"]
        if compression_filter:
            command.append(f"--use-compress-program={compression_filter}")
        command += ["--", member]
        self._compressed = compression_filter is not None
        self._errors = tempfile.TemporaryFile()
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, stderr=self._errors)
        self._broken = False
        self._size = 0
        self._tail = b""

    def write(self, data: bytes) -> None:
        self._size += len(data)
        self._tail = (self._tail + data[-1024:])[-1024:]
        if self._broken:
            return
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(data)
        except BrokenPipeError:
            self._broken = True

    def finish(self) -> None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.close()
        except BrokenPipeError:
            pass
        code = self._process.wait()
        self._errors.seek(0)
        message = self._errors.read(2000).decode("utf-8", "replace").strip()
        self._errors.close()
        if code != 0:
            raise MemberError(self.member, f"its inner archive does not extract (tar exited "
                                           f"with {code}: {message})")
        if not self._compressed and (self._size % 512 or self._tail != bytes(1024)):
            raise MemberError(self.member, "its inner archive is cut short (no end-of-archive "
                                           "blocks: a final chunk is missing)")

    def abort(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        if self._process.stdin is not None:
            try:
                self._process.stdin.close()
            except BrokenPipeError:
                pass
        self._errors.close()


class Member:
    """One member of the backup (all its chunks); handle it before asking for the next."""

    def __init__(self, reader: BackupReader, name: str, first: Entry) -> None:
        self.name = name
        self._reader = reader
        self._first: Entry | None = first
        #: number of chunks consumed so far
        self.chunks = 0

    @property
    def handled(self) -> bool:
        """Whether the member's chunks were consumed (extracted, verified or skipped)."""
        return self._first is None

    def extract(self, dest: Path) -> Path:
        """Verify and extract the member into directory *dest*; returns ``dest/name``."""
        dest.mkdir(parents=True, exist_ok=True)
        self._consume(_TarSink(self.name, dest, self._reader.header.compression_filter))
        return dest / self.name

    def verify(self) -> None:
        """Decrypt and authenticate every chunk, and check that the inner archive is
        complete and holds the member, without writing anything."""
        self._consume(_TarSink(self.name, None, self._reader.header.compression_filter))

    def read_bytes(self, max_size: int = 64 << 20) -> bytes:
        """Verify the member and return the content of its file (at most *max_size*)."""
        with tempfile.TemporaryDirectory(dir=self._reader.tmp_dir) as staging:
            path = self.extract(Path(staging))
            if not path.is_file() or path.stat().st_size > max_size:
                raise MemberError(self.name, f"not a file of at most {max_size} bytes")
            return path.read_bytes()

    def skip(self) -> None:
        """Pass over the member's chunks without decrypting them (their names and order
        are still checked)."""
        for entry in self._chunks():
            entry.discard()

    def _chunks(self) -> Iterator[Entry]:
        if self._first is None:
            raise RuntimeError(f"member {self.name} was already read")
        entry, self._first = self._first, None
        yield from self._reader._chunks_of(self, entry)

    def _consume(self, sink: _TarSink) -> None:
        """Decrypt the chunks (up to ``reader.workers`` at once: each needs its own
        scrypt key derivation) and feed their plaintext, in order, to *sink*."""
        reader = self._reader
        pending: deque[Future[IO[bytes]]] = deque()
        with ThreadPoolExecutor(reader.workers, thread_name_prefix="backup-decrypt") as pool:
            try:
                for entry in self._chunks():
                    if entry.size > reader.max_chunk_size + scrypt_file.OVERHEAD:
                        raise MemberError(self.name, f"chunk {entry.name} is {entry.size} "
                                                     f"bytes, more than a chunk may be")
                    if reader.workers == 1:
                        self._feed(self._decrypt(entry.name, entry), sink)
                        continue
                    pending.append(pool.submit(self._decrypt, entry.name,
                                               self._spool(entry)))
                    while len(pending) >= reader.workers:
                        self._feed(pending.popleft().result(), sink)
                while pending:
                    self._feed(pending.popleft().result(), sink)
                sink.finish()
            except BaseException:
                for future in pending:
                    future.cancel()
                sink.abort()
                raise

    def _spool(self, entry: Entry) -> IO[bytes]:
        """The chunk's encrypted data, read from the stream into a temporary file."""
        spooled = tempfile.TemporaryFile(dir=self._reader.tmp_dir)
        try:
            while block := entry.read(IO_BLOCK):
                spooled.write(block)
                self._reader.report()
            spooled.seek(0)
        except BaseException:
            spooled.close()
            raise
        return spooled

    def _decrypt(self, name: str, source: scrypt_file.Reader) -> IO[bytes]:
        """Decrypt chunk *name* from *source* into a temporary file, returned rewound
        only once its HMAC matched."""
        reader = self._reader
        passphrase = chunk_passphrase(reader.header.backup_id, name[:-len(".enc")],
                                      reader.passphrase)
        plain = tempfile.TemporaryFile(dir=reader.tmp_dir)
        try:
            scrypt_file.decrypt(source, plain, passphrase, limits=reader.limits,
                                progress=reader.report)
        except WrongPassphraseError:
            plain.close()
            raise MemberError(self.name, f"chunk {name} was not made for this place in this "
                                         f"backup (swapped, renamed or from another backup)"
                              ) from None
        except ScryptError as err:
            plain.close()
            raise MemberError(self.name, f"chunk {name}: {err}") from None
        except BaseException:
            plain.close()
            raise
        finally:
            if isinstance(source, io.IOBase):
                source.close()
        plain.seek(0)
        return plain

    @staticmethod
    def _feed(plain: IO[bytes], sink: _TarSink) -> None:
        with plain:
            while block := plain.read(IO_BLOCK):
                sink.write(block)


class BackupReader:
    """Reads a format 4 backup from *stream*; see the module docstring.

    *limits* bound what a chunk's scrypt header may ask for; *workers* chunks are
    decrypted at once (each costs a scrypt key derivation: its memory, a core, seconds;
    with more than one, each chunk is first spooled to a temporary file. scrypt is
    memory-bound: on the 2-core CI machine two at once took as long as one after the
    other, hence 1); *tmp_dir* holds at most 2 * *workers* chunks (default: the system
    temporary directory);
    *compression_filters* are the filter commands the header may name (Qubes' list,
    unless the caller trusts another); *force_filter*, when given, is used instead of
    the header's filter for a compressed backup (Qubes' ``--compression-filter``);
    *progress* gets the bytes read from the stream.
    """

    def __init__(self, stream: BinaryIO, passphrase: str | bytes, *,
                 limits: Limits | None = None, tmp_dir: Path | None = None,
                 max_chunk_size: int = CHUNK_SIZE, workers: int = 1,
                 compression_filters: tuple[str, ...] = KNOWN_FILTERS,
                 force_filter: str | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        self.passphrase = passphrase.encode() if isinstance(passphrase, str) else passphrase
        self.limits = limits or Limits()
        self.tmp_dir = tmp_dir
        self.max_chunk_size = max_chunk_size
        self.workers = max(1, workers)
        self._progress = progress
        self._outer = OuterReader(stream)
        self._entries = iter(self._outer)
        self._lookahead: Entry | None = None
        self._current: Member | None = None
        #: members met so far, in stream order
        self.seen: list[str] = []
        self.header = self._read_header()
        if force_filter is not None and self.header.compressed:
            self.header = dataclasses.replace(self.header, compression_filter=force_filter)
        elif self.header.compression_filter not in (None, *compression_filters):
            raise BackupFormatError(f"unusual compression filter "
                                    f"'{self.header.compression_filter}' in the backup header")

    def report(self, _: int = 0) -> None:
        """Tell the progress callback how far into the stream we are."""
        if self._progress is not None:
            self._progress(self._outer.offset)

    def _next(self, what: str) -> Entry:
        entry = next(self._entries, None)
        if entry is None:
            raise BackupFormatError(f"the backup stream ends before {what}")
        return entry

    def _small_entry(self, name: str) -> bytes:
        entry = self._next(name)
        if entry.name != name:
            raise BackupFormatError(f"not a Qubes format 4 backup: {entry.name!r} where "
                                    f"{name!r} was expected")
        if entry.size > MAX_HEADER_SIZE:
            raise BackupFormatError(f"{name} is too large ({entry.size} bytes)")
        return entry.read()

    def _read_header(self) -> BackupHeader:
        header = self._small_entry(HEADER_NAME)
        encrypted = self._small_entry(f"{HEADER_NAME}.hmac")
        authentic = io.BytesIO()
        try:
            scrypt_file.decrypt(io.BytesIO(encrypted), authentic,
                                header_passphrase(self.passphrase), limits=self.limits)
        except WrongPassphraseError:
            raise BackupPassphraseError("wrong passphrase: the backup header does not verify "
                                        "with it (or backup-header.hmac was changed)") from None
        except ScryptError as err:
            raise BackupFormatError(f"backup-header.hmac: {err}") from None
        if authentic.getvalue() != header:
            raise BackupFormatError("backup-header was changed: it differs from its "
                                    "authenticated copy in backup-header.hmac")
        return BackupHeader.parse(header)

    def members(self) -> Iterator[Member]:
        """The members in stream order (``qubes.xml`` first). A member not handled when
        the next is asked for is skipped."""
        while True:
            if self._current is not None and not self._current.handled:
                self._current.skip()
            entry, self._lookahead = self._lookahead, None
            if entry is None:
                entry = next(self._entries, None)
            if entry is None:
                if not self.seen:
                    raise BackupFormatError("the backup has no qubes.xml.000.enc")
                return
            name, index = split_chunk_name(entry.name)
            if not self.seen and name != QUBES_XML:
                raise BackupFormatError(f"{entry.name} where qubes.xml.000.enc was expected "
                                        f"after the header")
            if index != 0:
                raise MemberError(name, f"starts with {entry.name}: {name}.000.enc is missing "
                                        f"or out of order")
            if name in self.seen:
                raise MemberError(name, "appears twice in the backup (duplicated member)")
            self.seen.append(name)
            self._current = Member(self, name, entry)
            yield self._current

    def _chunks_of(self, member: Member, first: Entry) -> Iterator[Entry]:
        entry: Entry | None = first
        index = 0
        while entry is not None:
            member.chunks += 1
            yield entry
            self.report()
            following = next(self._entries, None)
            if following is None:
                return
            name, number = split_chunk_name(following.name)
            if name == member.name:
                if number != index + 1:
                    raise MemberError(member.name, f"{following.name} where "
                                      f"{member.name}.{index + 1:03d}.enc was expected (a "
                                      f"chunk is missing, duplicated or out of order)")
                index += 1
                entry = following
            else:
                self._lookahead = following
                entry = None

    def read_qubes_xml(self, max_size: int = 64 << 20) -> bytes:
        """The content of the first member, ``qubes.xml`` (call before :meth:`members`)."""
        if self.seen:
            raise RuntimeError("qubes.xml was already read")
        return next(self.members()).read_bytes(max_size)

    def verify_all(self) -> list[str]:
        """Verify every (remaining) member; returns their names."""
        names = []
        for member in self.members():
            member.verify()
            names.append(member.name)
        return names

    def extract(self, dest: Path, select: Callable[[str], bool] | None = None) -> list[str]:
        """Extract the (remaining) members *select* accepts (all by default) into
        *dest*, skipping the others; returns the extracted names."""
        names = []
        for member in self.members():
            if select is None or select(member.name):
                member.extract(dest)
                names.append(member.name)
        return names

