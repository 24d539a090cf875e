"""The file copy stream (qfile): names, packer and unpacker, refusals, a full disk.

The packer and the unpacker run in two threads connected by two pipes, as they are by
qrexec between two qubes; malicious streams are written by hand with the header format.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from septa.agent import qfile, qfile_unpack
from septa.agent.qfile import FileHeader
from septa.agent.qfile_names import (
    ALLOW_NON_CANONICAL_SYMLINKS,
    ALLOW_UNSAFE_CHARACTERS,
    safe_for_display,
    validate_file_name,
    validate_symlink,
)
from septa.agent.qfile_pack import CopyError, Packer
from septa.agent.qfile_scan import scan
from septa.agent.qfile_unpack import Unpacker

# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [b"a", b"a/b", b"dir/sub/file.txt", b"caf\xc3\xa9", b".hidden",
                                  b"a/..b", b"...", b"sp ace"])
def test_good_names(name: bytes) -> None:
    assert validate_file_name(name) == 0


@pytest.mark.parametrize("name", [b"", b"/abs", b"..", b"../evil", b"a/../b", b"a/..", b".",
                                  b"./a", b"a//b", b"a/", b"a\nb", b"a\x7fb", b"a\x1bb",
                                  b"bad\xff", b"rtl\xe2\x80\xae", b"a\0b", b"\xed\xa0\x80"])
def test_bad_names(name: bytes) -> None:
    assert validate_file_name(name) == -errno.EILSEQ


def test_unsafe_characters_can_be_allowed() -> None:
    assert validate_file_name(b"a\nb", ALLOW_UNSAFE_CHARACTERS) == 0
    assert validate_file_name(b"../a", ALLOW_UNSAFE_CHARACTERS) == -errno.EILSEQ


def test_safe_for_display() -> None:
    assert safe_for_display("naïve Ωμέγα 日本".encode())
    assert not safe_for_display("\u202eevil".encode())  # right-to-left override
    assert not safe_for_display("\u05d0".encode())  # Hebrew letter: right to left
    assert not safe_for_display(b"\xc0\xaf")  # overlong '/'


@pytest.mark.parametrize(("name", "target", "ok"), [
    (b"a/b", b"c", True),
    (b"a/b", b"c/d/", True),
    (b"a/b/c", b"../d", True),
    (b"a/b/c", b"../../d", False),
    (b"a/b", b"../c", False),
    (b"a/b", b"/etc/passwd", False),
    (b"a", b"b", False),  # a top-level entry may not be a link
    (b"a/b", b"x/../../c", False),
    (b"a/b/c", b"./../d", True),  # non-canonical targets are allowed (as the unpacker does)
    (b"a/b", b"./..", False),
])
def test_symlink_rules(name: bytes, target: bytes, ok: bool) -> None:
    result = validate_symlink(name, target, ALLOW_NON_CANONICAL_SYMLINKS)
    assert (result == 0) is ok, result
    if not ok:
        assert result == -errno.ENOLINK


def test_bad_symlink_name_is_eilseq() -> None:
    assert validate_symlink(b"../a/b", b"c") == -errno.EILSEQ


# --- helpers -------------------------------------------------------------------------------


class Transfer:
    """A packer (thread) and an unpacker (thread) between two pipes."""

    def __init__(self, dest: Path, **unpacker_args: object) -> None:
        self.dest = dest
        dest.mkdir(exist_ok=True)
        self.data_r, self.data_w = os.pipe()
        self.answer_r, self.answer_w = os.pipe()
        self.root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
        self.unpacker = Unpacker(self.data_r, self.answer_w, self.root,
                                 **unpacker_args)  # type: ignore[arg-type]
        self.code: int | None = None
        self.thread = threading.Thread(target=self._unpack)
        self.thread.start()

    def _unpack(self) -> None:
        try:
            self.code = self.unpacker.run()
        finally:
            os.close(self.data_r)  # as the process's exit would
            os.close(self.answer_w)

    def send(self, paths: list[Path], **packer_args: object) -> None:
        packer = Packer(self.data_w, self.answer_r, **packer_args)  # type: ignore[arg-type]
        try:
            for path in paths:
                packer.pack(str(path))
            packer.finish()
        finally:
            self.close()

    def close(self) -> None:
        self.thread.join(30)
        assert not self.thread.is_alive()
        for fd in (self.data_w, self.answer_r, self.root):
            os.close(fd)

    def raw(self, stream: bytes) -> tuple[int, bytes]:
        """Send a hand-made stream; (the answer's error code, its last name)."""
        try:
            qfile.write_all(self.data_w, stream)
        except BrokenPipeError:
            pass
        os.close(self.data_w)
        self.data_w = os.open(os.devnull, os.O_WRONLY)
        answer = b""
        while chunk := os.read(self.answer_r, 65536):
            answer += chunk
        self.close()
        code, _, _ = qfile.RESULT_HEADER.unpack(answer[:16])
        if len(answer) == 16:
            return code, b""
        (length,) = qfile.RESULT_EXT.unpack(answer[16:20])
        return code, answer[20:20 + length]


def entry(name: bytes, mode: int, data: bytes = b"", mtime: int = 1_600_000_000) -> bytes:
    """One hand-made entry of a stream."""
    return FileHeader(len(name) + 1, mode, len(data), mtime, 0, mtime, 0).encode() \
        + name + b"\0" + data


END = FileHeader().encode()
REG = stat.S_IFREG | 0o644
DIR = stat.S_IFDIR | 0o755
LNK = stat.S_IFLNK | 0o777


def tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under ``root``: (mode, mtime, content or link target)."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            what = "-> " + os.readlink(path)
        elif path.is_dir():
            what = "dir"
        else:
            what = hashlib.sha256(path.read_bytes()).hexdigest()
        out[str(path.relative_to(root))] = (stat.S_IMODE(st.st_mode), st.st_mtime_ns, what)
    return out


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Path]:
    src = tmp_path / "src" / "docs"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty").write_bytes(b"")
    (src / "a.txt").write_text("hello\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o750)
    (src / "sub" / "deeper" / "data.bin").write_bytes(os.urandom(300_000))
    (src / "sub" / "link").symlink_to("deeper/data.bin")
    (src / "sub" / "deeper" / "up").symlink_to("../link")
    (src / "caf\u00e9").write_text("unicode name")
    (src / "sub" / "deeper").chmod(0o555)
    os.utime(src / "a.txt", ns=(1_500_000_000_123_456_789, 1_600_000_000_987_654_321))
    os.utime(src / "sub", ns=(1_400_000_000_000_000_000, 1_400_000_000_000_000_000))
    yield src
    (src / "sub" / "deeper").chmod(0o755)


# --- round trips ---------------------------------------------------------------------------


def test_round_trip_keeps_tree_modes_times_and_links(tmp_path: Path, source: Path) -> None:
    (tmp_path / "single").write_bytes(b"x" * 10)
    transfer = Transfer(tmp_path / "in")
    transfer.send([source, tmp_path / "single"])
    assert transfer.code == 0
    got = tree(tmp_path / "in" / "docs")
    assert got == tree(source)
    assert got["a.txt"][1] == 1_600_000_000_987_654_321
    assert got["run.sh"][0] == 0o750
    assert got["sub/deeper"][0] == 0o555
    assert (tmp_path / "in" / "single").read_bytes() == b"x" * 10
    (tmp_path / "in" / "docs" / "sub" / "deeper").chmod(0o755)


def test_trailing_slash_and_relative_paths(tmp_path: Path, source: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(source.parent)
    transfer = Transfer(tmp_path / "in")
    transfer.send([Path("docs/sub/")])
    assert transfer.code == 0
    assert (tmp_path / "in" / "sub" / "deeper" / "data.bin").is_file()
    (tmp_path / "in" / "sub" / "deeper").chmod(0o755)


def test_big_file_streams_in_constant_memory(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    size = 64 * 1024 * 1024 + 7
    with big.open("wb") as f:  # sparse-ish: a hole, then random data at the end
        f.seek(size - 1_000_000)
        f.write(os.urandom(1_000_000))
    code = f"""
import os, sys, threading
sys.path.insert(0, {str(Path(qfile.__file__).parents[2])!r})
from septa.agent.qfile_pack import Packer
from septa.agent.qfile_unpack import Unpacker
data_r, data_w = os.pipe(); answer_r, answer_w = os.pipe()
root = os.open({str(tmp_path / 'in')!r}, os.O_RDONLY)
result = []
def unpack():
    result.append(Unpacker(data_r, answer_w, root).run())
t = threading.Thread(target=unpack); t.start()
p = Packer(data_w, answer_r); p.pack({str(big)!r}); p.finish(); t.join()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(result[0], hwm)
"""
    (tmp_path / "in").mkdir()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "0"
    assert int(out[1]) < 40 * 1024, f"peak RSS {out[1]} KiB: the data was held in memory"
    got = tmp_path / "in" / "big.bin"
    assert got.stat().st_size == size
    with big.open("rb") as a, got.open("rb") as b:
        while chunk := a.read(1 << 20):
            assert chunk == b.read(1 << 20)


def test_result_crc_covers_the_whole_stream(tmp_path: Path) -> None:
    stream = entry(b"f", REG, b"data") + END
    transfer = Transfer(tmp_path / "in")
    qfile.write_all(transfer.data_w, stream)
    answer = os.read(transfer.answer_r, 1024)
    transfer.close()
    code, _, crc = qfile.RESULT_HEADER.unpack(answer[:16])
    assert code == 0 and crc == zlib.crc32(stream)
    assert answer[16:] == qfile.RESULT_EXT.pack(1) + b"f"


# --- refusals ------------------------------------------------------------------------------


def outside(tmp_path: Path) -> set[str]:
    """What exists in tmp_path outside the incoming directory."""
    return {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
            if p.relative_to(tmp_path).parts[0] not in ("in", "root")}


@pytest.mark.parametrize(("stream", "code", "name"), [
    (entry(b"../evil", REG, b"x"), errno.EILSEQ, b"../evil"),
    (entry(b"/tmp/evil", REG, b"x"), errno.EILSEQ, b"/tmp/evil"),
    (entry(b"a", DIR) + entry(b"a/../../evil", REG, b"x"), errno.EILSEQ, b"a/../../evil"),
    (entry(b"ok\x1b[31m", REG, b"x"), errno.EILSEQ, b"ok\x1b[31m"),
    (entry(b"a", DIR) + entry(b"a/l", LNK, b"../../evil"), errno.ENOLINK, b"../../evil"),
    (entry(b"a", DIR) + entry(b"a/l", LNK, b"/etc"), errno.ENOLINK, b"/etc"),
    (entry(b"top", LNK, b"x"), errno.ENOLINK, b"x"),
    (entry(b"fifo", stat.S_IFIFO | 0o644), errno.EINVAL, b"fifo"),
    (entry(b"f", REG, b"x") + entry(b"f", REG, b"y"), errno.EEXIST, b"f"),
    (entry(b"f", REG, b"short")[:-2], qfile.LEGAL_EOF, b"f"),
    (entry(b"f", REG, b"x"), errno.EREMOTEIO, b"f"),  # no end marker
    (FileHeader(70000, REG).encode(), errno.ENAMETOOLONG, b""),
])
def test_malicious_streams_are_refused(tmp_path: Path, stream: bytes, code: int,
                                       name: bytes) -> None:
    transfer = Transfer(tmp_path / "in")
    got_code, got_name = transfer.raw(stream)
    assert (got_code, got_name) == (code, name)
    assert outside(tmp_path) == set()
    if code not in (errno.EEXIST, errno.EREMOTEIO):  # (those came complete)
        assert not (tmp_path / "in" / "f").exists()


def test_links_in_the_tree_are_never_followed(tmp_path: Path) -> None:
    """A link received earlier (pointing inside its tree) cannot be used as a directory."""
    (tmp_path / "secret").mkdir()
    stream = (entry(b"a", DIR) + entry(b"a/b", DIR) + entry(b"a/b/l", LNK, b"..")
              + entry(b"a/b/l/x", REG, b"y") + END)
    transfer = Transfer(tmp_path / "in")
    code, name = transfer.raw(stream)
    assert code in (errno.ELOOP, errno.ENOTDIR) and name == b"l"
    assert not (tmp_path / "in" / "a" / "x").exists()


def test_planted_link_to_outside_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "victim").mkdir()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "d").symlink_to(tmp_path / "victim")
    transfer = Transfer(tmp_path / "in")
    code, _ = transfer.raw(entry(b"d/x", REG, b"data") + END)
    assert code in (errno.ELOOP, errno.ENOTDIR)
    assert list((tmp_path / "victim").iterdir()) == []


def test_setuid_bits_are_dropped(tmp_path: Path) -> None:
    transfer = Transfer(tmp_path / "in")
    code, _ = transfer.raw(entry(b"f", stat.S_IFREG | 0o6755, b"#!") + END)
    assert code == 0
    assert stat.S_IMODE((tmp_path / "in" / "f").stat().st_mode) == 0o755


def test_bad_nanoseconds_are_refused(tmp_path: Path) -> None:
    header = FileHeader(2, REG, 1, 0, 2_000_000_000, 0, 0).encode()
    transfer = Transfer(tmp_path / "in")
    code, _ = transfer.raw(header + b"f\0x" + END)
    assert code == errno.EINVAL
    assert not (tmp_path / "in" / "f").exists()


def test_all_names_can_be_allowed(tmp_path: Path) -> None:
    transfer = Transfer(tmp_path / "in", allow_all_names=True)
    code, _ = transfer.raw(entry(b"new\nline", REG, b"x") + END)
    assert code == 0 and (tmp_path / "in" / "new\nline").is_file()
    transfer = Transfer(tmp_path / "in2", allow_all_names=True)
    assert transfer.raw(entry(b"../x", REG, b"x") + END)[0] == errno.EILSEQ


def test_sender_reports_the_receivers_error(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("already here")
    (tmp_path / "a.txt").write_text("new")
    transfer = Transfer(tmp_path / "in")
    with pytest.raises(CopyError, match='A file named "a.txt" already exists in QubesIncoming'):
        transfer.send([tmp_path / "a.txt"])
    assert (tmp_path / "in" / "a.txt").read_text() == "already here"


def test_sender_stops_early_at_an_error(tmp_path: Path) -> None:
    """The sender sees the error before it has sent everything (it checks as it goes)."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "first").write_text("x")
    src = tmp_path / "src"
    src.mkdir()
    (src / "first").write_text("x")
    (src / "second").write_bytes(b"\0" * (8 * 1024 * 1024))
    transfer = Transfer(tmp_path / "in2")
    (tmp_path / "in2" / "src").mkdir()
    (tmp_path / "in2" / "src" / "first").write_text("x")
    packer = Packer(transfer.data_w, transfer.answer_r)
    with pytest.raises(CopyError, match="already exists"):
        packer.pack(str(src))
    transfer.close()
    assert packer.sent < 8 * 1024 * 1024


# --- a full disk ---------------------------------------------------------------------------


def test_a_file_that_does_not_fit_is_refused_before_its_data(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.fstatvfs

    def tiny(fd: int) -> os.statvfs_result:
        st = real(fd)
        values = list(st)
        values[4] = 2048  # f_bavail: 8 MiB in 4 KiB blocks
        values[1] = 4096
        return os.statvfs_result(values)

    monkeypatch.setattr(qfile_unpack.os, "fstatvfs", tiny)
    big = tmp_path / "big"
    big.write_bytes(b"\0" * (8 * 1024 * 1024))
    transfer = Transfer(tmp_path / "in")
    with pytest.raises(CopyError, match='File copy: "No space left on device; Last file: big"'):
        transfer.send([big])
    assert list((tmp_path / "in").iterdir()) == []


@pytest.mark.parametrize("tmpfile", [True, False])
def test_a_write_error_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              tmpfile: bool) -> None:
    written = [0]
    real = qfile.write_all

    def failing(fd: int, data: bytes | memoryview) -> None:
        if fd > 2 and len(data) > 100:  # file data, not the answer
            written[0] += len(data)
            if written[0] > 1_000_000:
                raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(3_000_000))
    monkeypatch.setattr(qfile_unpack.qfile, "write_all", failing)
    transfer = Transfer(tmp_path / "in")
    transfer.unpacker.use_tmpfile = tmpfile
    with pytest.raises(CopyError, match="No space left on device"):
        transfer.send([src])
    assert list((tmp_path / "in").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_real_full_disk(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        (tmp_path / "small.bin").write_bytes(os.urandom(1_000_000))
        (tmp_path / "big.bin").write_bytes(os.urandom(5_000_000))
        transfer = Transfer(mnt / "in")
        with pytest.raises(CopyError, match="No space left on device; Last file: big.bin"):
            transfer.send([tmp_path / "small.bin", tmp_path / "big.bin"])
        assert [p.name for p in (mnt / "in").iterdir()] == ["small.bin"]
        # Past the free-space check (no reserve, free space misjudged): the write fails.
        transfer = Transfer(mnt / "in2", reserve=-10_000_000)
        with pytest.raises(CopyError, match="No space left on device; Last file: big.bin"):
            transfer.send([tmp_path / "big.bin"])
        assert list((mnt / "in2").iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# --- the sender's checks -------------------------------------------------------------------


def test_scan_counts_and_checks(tmp_path: Path, source: Path) -> None:
    total, safe = scan([str(source)])
    assert total == 6 + 10 + 300_000 + 12 + len("deeper/data.bin") + len("../link")
    assert safe
    odd = tmp_path / "odd\x01name"
    odd.write_text("x")
    assert scan([str(odd)]) == (1, False)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "out").symlink_to("../../etc/passwd")
    with pytest.raises(CopyError, match="unsafe symbolic link"):
        scan([str(tmp_path / "d")])
    assert scan([str(tmp_path / "d")], ignore_symlinks=True) == (0, True)
    for bad in ("", ".", "..", "/"):
        with pytest.raises(CopyError):
            scan([bad])
