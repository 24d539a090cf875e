"""Every way a backup can be damaged or tampered with gives a clear error naming the
problem and the member: wrong passphrase, changed header, changed, swapped, reordered,
duplicated, missing, renamed, foreign or truncated chunks."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from septa.backup import (
    BackupFormatError,
    BackupPassphraseError,
    BackupReader,
    MemberError,
    outer_tar,
    scrypt_file,
)
from septa.backup.writer import chunk_passphrase
from tests.backup.helpers import (
    FAST,
    PASSPHRASE,
    join_entries,
    make_backup,
    random_bytes,
    split_entries,
)

VOLUME = random_bytes(150_000)
BACKUP_ID = "20240102T030405-99"


def _backup(compression: str | None = None, backup_id: str = BACKUP_ID) -> bytes:
    return make_backup({"qubes.xml": b"<qubes/>", "vm1/private.img": VOLUME,
                        "vm1/firewall.xml": b"<firewall/>"},
                       compression=compression, chunk_size=64 * 1024, backup_id=backup_id)


WORKERS = {"count": 2}


@pytest.fixture(autouse=True, params=[1, 2], ids=["sequential", "parallel"])
def workers(request: pytest.FixtureRequest) -> int:
    """Every case with chunks decrypted one by one and two at a time."""
    WORKERS["count"] = request.param
    return int(request.param)


def _restore(backup: bytes, tmp_path: Path, passphrase: str = PASSPHRASE) -> None:
    reader = BackupReader(io.BytesIO(backup), passphrase, workers=WORKERS["count"])
    reader.extract(tmp_path / "staging")


def _names(entries: list[tuple[str, bytes]]) -> list[str]:
    return [name for name, _ in entries]


def test_the_undamaged_backup_restores(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    assert _names(entries) == [
        "backup-header", "backup-header.hmac", "qubes.xml.000.enc",
        "vm1/private.img.000.enc", "vm1/private.img.001.enc", "vm1/private.img.002.enc",
        "vm1/firewall.xml.000.enc"]
    _restore(join_entries(entries), tmp_path)
    assert (tmp_path / "staging/vm1/private.img").read_bytes() == VOLUME


def test_wrong_passphrase(tmp_path: Path) -> None:
    with pytest.raises(BackupPassphraseError, match="wrong passphrase"):
        _restore(_backup(), tmp_path, "correct horse battery stapler")


def test_a_changed_header(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    entries[0] = ("backup-header", entries[0][1].replace(b"-99", b"-98"))
    with pytest.raises(BackupFormatError, match="backup-header was changed"):
        _restore(join_entries(entries), tmp_path)


def test_a_changed_header_hmac(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    damaged = bytearray(entries[1][1])
    damaged[-40] ^= 1
    entries[1] = ("backup-header.hmac", bytes(damaged))
    with pytest.raises(BackupFormatError, match="backup-header.hmac"):
        _restore(join_entries(entries), tmp_path)


@pytest.mark.parametrize("position", [0, 97, 5000, -33, -1])
def test_a_changed_byte_in_a_chunk(tmp_path: Path, position: int) -> None:
    entries = split_entries(_backup())
    damaged = bytearray(entries[4][1])
    damaged[position] ^= 0x10
    entries[4] = (entries[4][0], bytes(damaged))
    with pytest.raises(MemberError, match="vm1/private.img: chunk vm1/private.img.001.enc") \
            as caught:
        _restore(join_entries(entries), tmp_path)
    assert caught.value.member == "vm1/private.img"


def test_swapped_chunk_contents(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    (name3, data3), (name4, data4) = entries[3], entries[4]
    entries[3], entries[4] = (name3, data4), (name4, data3)
    with pytest.raises(MemberError, match="chunk vm1/private.img.000.enc was not made for "
                                          "this place"):
        _restore(join_entries(entries), tmp_path)


def test_reordered_chunks(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    entries[3], entries[4] = entries[4], entries[3]
    with pytest.raises(MemberError, match=r"vm1/private.img: starts with "
                                          r"vm1/private.img.001.enc"):
        _restore(join_entries(entries), tmp_path)


def test_a_duplicated_chunk(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    entries.insert(5, entries[4])
    with pytest.raises(MemberError, match=r"vm1/private.img.001.enc where "
                                          r"vm1/private.img.002.enc was expected"):
        _restore(join_entries(entries), tmp_path)


def test_a_missing_middle_chunk(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    del entries[4]
    with pytest.raises(MemberError, match=r"vm1/private.img.002.enc where "
                                          r"vm1/private.img.001.enc was expected"):
        _restore(join_entries(entries), tmp_path)


@pytest.mark.parametrize("compression", ["gzip", None])
def test_a_missing_last_chunk(tmp_path: Path, compression: str | None) -> None:
    entries = split_entries(_backup(compression))
    last = max(i for i, (name, _) in enumerate(entries) if name.startswith("vm1/private"))
    assert last > 3
    del entries[last]
    with pytest.raises(MemberError, match="vm1/private.img: its inner archive"):
        _restore(join_entries(entries), tmp_path)


def test_a_chunk_from_another_backup(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    other = split_entries(_backup(backup_id="20240102T030405-100"))
    entries[4] = other[4]
    with pytest.raises(MemberError, match="vm1/private.img.001.enc was not made for this "
                                          "place in this backup"):
        _restore(join_entries(entries), tmp_path)


def test_a_chunk_moved_to_another_member(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    entries[6] = ("vm1/firewall.xml.000.enc", entries[2][1])
    with pytest.raises(MemberError, match="vm1/firewall.xml: chunk vm1/firewall.xml.000.enc "
                                          "was not made"):
        _restore(join_entries(entries), tmp_path)


def test_a_duplicated_member(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    with pytest.raises(MemberError, match="vm1/firewall.xml: vm1/firewall.xml.000.enc where "
                                          "vm1/firewall.xml.001.enc was expected"):
        _restore(join_entries([*entries, entries[6]]), tmp_path)
    with pytest.raises(MemberError, match="vm1/private.img: appears twice"):
        _restore(join_entries([*entries, *entries[3:6]]), tmp_path)


def test_qubes_xml_must_come_first(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    del entries[2]
    with pytest.raises(BackupFormatError, match="qubes.xml.000.enc was expected"):
        _restore(join_entries(entries), tmp_path)


def test_a_foreign_file_in_the_stream(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    entries.insert(3, ("evil.sh", b"rm -rf /"))
    with pytest.raises(BackupFormatError, match="unexpected file 'evil.sh'"):
        _restore(join_entries(entries), tmp_path)


def test_not_a_backup(tmp_path: Path) -> None:
    with pytest.raises(BackupFormatError, match="not a Qubes format 4 backup"):
        _restore(join_entries([("hello.txt", b"hi")]), tmp_path)
    with pytest.raises(BackupFormatError):
        _restore(b"just some bytes" * 100, tmp_path)


def _data_offsets(backup: bytes) -> list[tuple[int, int]]:
    """(start, end) in the stream of each entry's data."""
    entries = split_entries(backup)
    offsets, position = [], 0
    for name, data in entries:
        size = outer_tar.archive_size(name, len(data))
        header = len(outer_tar.entry_header(name, len(data), 0))
        offsets.append((position + header, position + header + len(data)))
        position += size
    assert position == len(backup)
    return offsets


def test_a_stream_cut_inside_any_entry_is_refused(tmp_path: Path) -> None:
    backup = _backup()
    for start, end in _data_offsets(backup):
        for cut in (start - 700, start, (start + end) // 2, end - 1):
            with pytest.raises(BackupFormatError):
                _restore(backup[:cut], tmp_path / str(cut))


def test_a_stream_cut_in_the_final_padding_lost_nothing(tmp_path: Path) -> None:
    backup = _backup()
    end = _data_offsets(backup)[-1][1]
    _restore(backup[:end + -end % 512 + 512], tmp_path)
    assert (tmp_path / "staging/vm1/firewall.xml").read_bytes() == b"<firewall/>"


def test_an_oversized_chunk_is_refused_before_it_is_read(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    entries[3] = (entries[3][0], bytes(200_000))
    reader = BackupReader(io.BytesIO(join_entries(entries)), PASSPHRASE, max_chunk_size=65536)
    with pytest.raises(MemberError, match="more than a chunk may be"):
        reader.extract(tmp_path / "staging")


def _chunk(backup_id: str, chunk: str, plaintext: bytes) -> bytes:
    out = io.BytesIO()
    scrypt_file.encrypt(io.BytesIO(plaintext), out,
                        chunk_passphrase(backup_id, chunk, PASSPHRASE.encode()), FAST)
    return out.getvalue()


def test_an_inner_archive_without_its_member(tmp_path: Path) -> None:
    (tmp_path / "other").write_bytes(b"x")
    inner = subprocess.run(["tar", "-c", "-C", str(tmp_path), "other"], capture_output=True,
                           check=True).stdout
    entries = split_entries(_backup())[:3]
    entries.append(("vm1/private.img.000.enc", _chunk(BACKUP_ID, "vm1/private.img.000", inner)))
    with pytest.raises(MemberError, match="vm1/private.img: its inner archive does not "
                                          "extract.*Not found in archive"):
        _restore(join_entries(entries), tmp_path)


def test_a_skipped_member_is_still_checked_for_order(tmp_path: Path) -> None:
    entries = split_entries(_backup())
    del entries[4]
    reader = BackupReader(io.BytesIO(join_entries(entries)), PASSPHRASE)
    with pytest.raises(MemberError, match="was expected"):
        reader.extract(tmp_path / "staging", select=lambda name: False)


def test_an_empty_last_chunk_as_qubes_writes_is_accepted(tmp_path: Path) -> None:
    """Qubes' writer starts a new chunk whenever one is full, so a stream that fills its
    last chunk exactly is followed by an empty one."""
    entries = split_entries(_backup())
    entries.insert(6, ("vm1/private.img.003.enc",
                       _chunk(BACKUP_ID, "vm1/private.img.003", b"")))
    _restore(join_entries(entries), tmp_path)
    assert (tmp_path / "staging/vm1/private.img").read_bytes() == VOLUME
