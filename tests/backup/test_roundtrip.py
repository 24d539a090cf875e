"""Writing and reading whole backups: several members, a 300 MiB sparse file through a
pipe (sparseness kept), compressed or not, subsets, verify-only, progress and cancel."""

from __future__ import annotations

import io
import os
import subprocess
import threading
from pathlib import Path

import pytest

from septa.backup import (
    BackupReader,
    BackupWriter,
    MemberError,
    atomic_output,
)
from septa.backup.writer import CHUNK_SIZE
from tests.backup.helpers import (
    FAST,
    PASSPHRASE,
    make_backup,
    random_bytes,
    sparse_file,
    split_entries,
)

MIB = 1 << 20


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A 300 MiB sparse volume with 105 MiB of data in three places, so that its inner
    archive takes two 100 MiB chunks."""
    return sparse_file(tmp_path / "private.img", 300 * MIB, {
        0: b"boot sector",
        CHUNK_SIZE - 3 * MIB: random_bytes(104 * MIB),
        299 * MIB: b"the end".ljust(MIB, b"!"),
    })


@pytest.mark.parametrize("compression", ["gzip", None])
def test_a_300_mib_sparse_volume_through_a_pipe(tmp_path: Path, volume: Path,
                                                compression: str | None) -> None:
    """Written into a pipe at full chunk size, read from the other end of the pipe."""
    read_end, write_end = os.pipe()
    progress: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with open(write_end, "wb") as out, BackupWriter(
                    out, PASSPHRASE, compression_filter=compression, params=FAST,
                    progress=lambda done, total: progress.append((done, total)),
                    total_estimate=105 * MIB) as writer:
                writer.add_bytes("qubes.xml", b"<qubes/>")
                writer.add_file("vm3/private.img", volume)
                writer.add_bytes("vm3/firewall.xml", b"<firewall/>")
                writer.add_bytes("vm3/notes.txt", "notes \u2713".encode())
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    thread = threading.Thread(target=write)
    thread.start()
    with open(read_end, "rb") as pipe:
        reader = BackupReader(pipe, PASSPHRASE)
        assert reader.header.compression_filter == compression
        assert reader.read_qubes_xml() == b"<qubes/>"
        staging = tmp_path / "staging"
        chunks = {}
        for member in reader.members():
            member.extract(staging)
            chunks[member.name] = member.chunks
        assert chunks == {"vm3/private.img": 2, "vm3/firewall.xml": 1, "vm3/notes.txt": 1}
    thread.join()
    assert not errors
    restored = staging / "vm3/private.img"
    assert subprocess.run(["cmp", str(volume), str(restored)]).returncode == 0
    assert restored.stat().st_size == 300 * MIB
    assert restored.stat().st_blocks <= volume.stat().st_blocks + 64
    assert (staging / "vm3/firewall.xml").read_bytes() == b"<firewall/>"
    assert (staging / "vm3/notes.txt").read_text() == "notes \u2713"
    dones = [done for done, _ in progress]
    assert dones == sorted(dones) and progress[-1][0] == progress[-1][1]


def test_members_are_cut_into_chunks_named_in_order(tmp_path: Path) -> None:
    data = random_bytes(200_000)
    backup = make_backup({"qubes.xml": b"<q/>", "vm5/root.img": data}, compression=None,
                         chunk_size=64 * 1024)
    names = [name for name, _ in split_entries(backup)]
    assert names[:3] == ["backup-header", "backup-header.hmac", "qubes.xml.000.enc"]
    chunks = [name for name in names if name.startswith("vm5/")]
    assert chunks == [f"vm5/root.img.{i:03d}.enc" for i in range(len(chunks))]
    assert len(chunks) == -(-(200_000 + 2048) // (64 * 1024))
    reader = BackupReader(io.BytesIO(backup), PASSPHRASE)
    reader.read_qubes_xml()
    member = next(reader.members())
    assert member.read_bytes() == data and member.chunks == len(chunks)


def test_a_stream_of_exactly_n_chunks_gets_no_empty_chunk() -> None:
    out = io.BytesIO()
    with BackupWriter(out, PASSPHRASE, compression_filter=None, params=FAST,
                      chunk_size=10240) as writer:
        writer.add_bytes("qubes.xml", b"q")
        writer.add_stream("vm3/raw", io.BytesIO(bytes(10240 * 3 - 2048)), 10240 * 3 - 2048)
    names = [name for name, _ in split_entries(out.getvalue())]
    assert [n for n in names if n.startswith("vm3/")] == [
        "vm3/raw.000.enc", "vm3/raw.001.enc", "vm3/raw.002.enc"]


def test_header_lines_are_as_qubes_writes_them() -> None:
    backup = make_backup({"qubes.xml": b"x"}, backup_id="20240101T000000-42")
    entries = dict(split_entries(backup))
    assert entries["backup-header"] == (
        b"version=4\nencrypted=True\ncompressed=True\ncompression-filter=gzip\n"
        b"hmac-algorithm=scrypt\nbackup-id=20240101T000000-42\n")
    plain = make_backup({"qubes.xml": b"x"}, compression=None)
    assert b"compressed=False\n" in dict(split_entries(plain))["backup-header"]


def test_a_subset_is_extracted_and_the_rest_skipped(tmp_path: Path) -> None:
    backup = make_backup({"qubes.xml": b"q", "vm1/private.img": random_bytes(100_000),
                          "vm2/private.img": b"two", "vm2/firewall.xml": b"fw"})
    reader = BackupReader(io.BytesIO(backup), PASSPHRASE)
    reader.read_qubes_xml()
    assert reader.extract(tmp_path / "out", lambda name: name.startswith("vm2/")) == [
        "vm2/private.img", "vm2/firewall.xml"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["vm2"]
    assert reader.seen == ["qubes.xml", "vm1/private.img", "vm2/private.img",
                           "vm2/firewall.xml"]


def test_verify_only_writes_nothing(tmp_path: Path) -> None:
    backup = make_backup({"qubes.xml": b"q", "vm1/private.img": random_bytes(150_000)})
    (tmp_path / "tmp").mkdir()
    reader = BackupReader(io.BytesIO(backup), PASSPHRASE, tmp_dir=tmp_path / "tmp")
    assert reader.verify_all() == ["qubes.xml", "vm1/private.img"]
    assert list((tmp_path / "tmp").iterdir()) == []


def test_cancel_leaves_no_backup_file(tmp_path: Path, volume: Path) -> None:
    destination = tmp_path / "backup"

    def cancel(done: int, total: int) -> None:
        if done > MIB:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), atomic_output(destination) as out, \
            BackupWriter(out, PASSPHRASE, params=FAST, progress=cancel,
                         compression_filter=None) as writer:
        writer.add_bytes("qubes.xml", b"q")
        writer.add_file("vm3/private.img", volume)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private.img", "root"]


def test_a_finished_backup_replaces_the_destination_only_at_the_end(tmp_path: Path) -> None:
    destination = tmp_path / "backup"
    destination.write_bytes(b"old")
    with atomic_output(destination) as out, BackupWriter(out, PASSPHRASE, params=FAST) as w:
        w.add_bytes("qubes.xml", b"q")
        assert destination.read_bytes() == b"old"
    assert destination.read_bytes()[:13] == b"./PaxHeaders/"
    assert oct(destination.stat().st_mode & 0o777) == "0o600"


def test_the_first_member_must_be_qubes_xml_and_names_unique() -> None:
    with BackupWriter(io.BytesIO(), PASSPHRASE, params=FAST) as writer:
        with pytest.raises(ValueError, match="qubes.xml"):
            writer.add_bytes("vm1/private.img", b"x")
        writer.add_bytes("qubes.xml", b"q")
        with pytest.raises(ValueError, match="already"):
            writer.add_bytes("qubes.xml", b"q")
        with pytest.raises(ValueError, match="invalid"):
            writer.add_bytes("../etc/passwd", b"q")


def test_a_failing_source_is_an_error_naming_the_member(tmp_path: Path) -> None:
    with BackupWriter(io.BytesIO(), PASSPHRASE, params=FAST) as writer:
        writer.add_bytes("qubes.xml", b"q")
        with pytest.raises(Exception, match="vm1/private.img"):
            writer.add_stream("vm1/private.img", io.BytesIO(b"short"), 100)
        with pytest.raises(Exception, match="not a regular file"):
            writer.add_file("vm1/root.img", tmp_path)


def test_a_member_cannot_be_read_twice() -> None:
    reader = BackupReader(io.BytesIO(make_backup({"qubes.xml": b"q"})), PASSPHRASE)
    member = next(reader.members())
    member.verify()
    with pytest.raises(RuntimeError):
        member.verify()
    with pytest.raises(StopIteration):
        next(reader.members())


def test_bzip2_and_xz_filters(tmp_path: Path) -> None:
    for name in ("bzip2", "xz"):
        if subprocess.run(["which", name], capture_output=True).returncode:
            continue
        backup = make_backup({"qubes.xml": b"q" * 1000}, compression=name)
        reader = BackupReader(io.BytesIO(backup), PASSPHRASE)
        assert reader.read_qubes_xml() == b"q" * 1000


def test_an_unknown_filter_is_not_run_unless_allowed() -> None:
    backup = make_backup({"qubes.xml": b"q"}, compression="cat")
    with pytest.raises(Exception, match="unusual compression filter"):
        BackupReader(io.BytesIO(backup), PASSPHRASE)
    with pytest.raises(MemberError):
        BackupReader(io.BytesIO(backup), PASSPHRASE,
                     compression_filters=("cat",)).read_qubes_xml()


def test_a_forced_filter_replaces_the_headers() -> None:
    """Qubes' --compression-filter: an unusual filter named in the header is not run; the
    one the user forces is, whatever the header says."""
    backup = make_backup({"qubes.xml": b"q" * 1000}, compression="cat")
    reader = BackupReader(io.BytesIO(backup), PASSPHRASE, force_filter="gzip")
    assert reader.header.compression_filter == "gzip"
    with pytest.raises(MemberError):
        reader.read_qubes_xml()  # "cat" wrote it, not gzip
    plain = make_backup({"qubes.xml": b"q"}, compression=None)
    reader = BackupReader(io.BytesIO(plain), PASSPHRASE, force_filter="gzip")
    assert reader.header.compression_filter is None, "not compressed: nothing to force"
    assert reader.read_qubes_xml() == b"q"
