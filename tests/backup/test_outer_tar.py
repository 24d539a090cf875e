"""The outer tar layer: laid out like Qubes' ``tar -cO --posix`` per file, and read
back (also from GNU tar's own output) like ``tar -i``."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from septa.backup import outer_tar
from septa.backup.errors import BackupFormatError


def _gnu_tar(directory: Path, name: str) -> bytes:
    return subprocess.run(["tar", "-cO", "--posix", "-C", str(directory), name],
                          capture_output=True, check=True).stdout


def _without_times(archive: bytes) -> bytes:
    """The archive with the pax time records, mtime fields and checksums blanked."""
    data = bytearray(archive)
    data[124:156] = bytes(32)
    data[1024 + 136:1024 + 156] = bytes(20)
    data[512:1024] = bytes(512)
    return bytes(data)


@pytest.mark.parametrize("name", ["backup-header", "vm12/private.img.000.enc"])
def test_an_entry_is_laid_out_as_gnu_tar_posix_does(tmp_path: Path, name: str) -> None:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(b"x" * 700)
    gnu = _gnu_tar(tmp_path, name)
    ours = io.BytesIO()
    outer_tar.write_entry(ours, name, b"x" * 700)
    assert len(ours.getvalue()) == len(gnu) == outer_tar.archive_size(name, 700)
    assert _without_times(ours.getvalue()) == _without_times(gnu)
    pax = ours.getvalue()[512:1024].rstrip(b"\0").decode()
    assert [line.split("=")[0].split(" ")[1] for line in pax.splitlines()] == \
        ["mtime", "atime", "ctime"]


def test_gnu_tar_lists_concatenated_entries_with_ignore_zeros(tmp_path: Path) -> None:
    stream = io.BytesIO()
    for index in range(3):
        outer_tar.write_entry(stream, f"vm3/f.{index:03d}.enc", os.urandom(100 * index))
    (tmp_path / "b").write_bytes(stream.getvalue())
    listing = subprocess.run(["tar", "-itf", str(tmp_path / "b")], capture_output=True,
                             text=True, check=True).stdout.split()
    assert listing == ["vm3/f.000.enc", "vm3/f.001.enc", "vm3/f.002.enc"]


def test_the_reader_reads_gnu_tars_concatenated_output(tmp_path: Path) -> None:
    names = ["backup-header", "qubes.xml.000.enc", "vm3/private.img.000.enc"]
    blob = b""
    for index, name in enumerate(names):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(bytes([index]) * (index * 5000 + 1))
        blob += _gnu_tar(tmp_path, name)
    entries = [(e.name, e.read()) for e in outer_tar.OuterReader(io.BytesIO(blob))]
    assert entries == [(name, (tmp_path / name).read_bytes()) for name in names]


def test_unread_data_is_skipped() -> None:
    stream = io.BytesIO()
    outer_tar.write_entry(stream, "a", b"1" * 3000)
    outer_tar.write_entry(stream, "b", b"2")
    stream.seek(0)
    assert [e.name for e in outer_tar.OuterReader(stream)] == ["a", "b"]


def test_a_changed_header_byte_is_refused() -> None:
    stream = io.BytesIO()
    outer_tar.write_entry(stream, "a", b"data")
    blob = bytearray(stream.getvalue())
    blob[1024 + 3] ^= 1
    with pytest.raises(BackupFormatError, match="checksum"):
        list(outer_tar.OuterReader(io.BytesIO(bytes(blob))))


@pytest.mark.parametrize("keep", [100, 1024 + 100, 1536 + 2])
def test_a_stream_cut_short_is_refused(keep: int) -> None:
    stream = io.BytesIO()
    outer_tar.write_entry(stream, "a", b"d" * 600)
    cut = io.BytesIO(stream.getvalue()[:keep])
    with pytest.raises(BackupFormatError, match="ends inside"):
        for entry in outer_tar.OuterReader(cut):
            entry.read()


@pytest.mark.parametrize("name", ["/abs", "../up", "a/../b", "a//b", "", "a/./b", "sp ace"])
def test_unsafe_names_are_not_written(name: str) -> None:
    with pytest.raises(ValueError):
        outer_tar.write_entry(io.BytesIO(), name, b"")
