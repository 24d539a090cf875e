"""Volumes that are block devices: our pax sparse 1.0 archive (zero regions left out),
as Qubes' qubes.tarwriter writes, extracted by GNU tar as a sparse file."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from septa.backup import BackupReader, BackupWriter
from septa.backup.sparse_tar import GRAIN, data_map, sparse_archive
from tests.backup.helpers import FAST, PASSPHRASE, make_backup, random_bytes, sparse_file

MIB = 1 << 20


@pytest.mark.parametrize(("size", "pieces", "expected"), [
    (0, {}, [(0, 0)]),
    (3 * MIB, {}, [(3 * MIB, 0)]),
    (3 * MIB, {0: b"a"}, [(0, GRAIN), (3 * MIB, 0)]),
    (3 * MIB, {GRAIN + 5: b"a", 3 * MIB - 1: b"z"}, [(GRAIN, GRAIN), (3 * MIB - GRAIN, GRAIN)]),
    (1000, {999: b"z"}, [(0, 1000)]),
    (2 * MIB + 100, {2 * MIB + 1: b"z"}, [(2 * MIB, 100)]),
])
def test_data_map(tmp_path: Path, size: int, pieces: dict[int, bytes],
                  expected: list[tuple[int, int]]) -> None:
    assert data_map(sparse_file(tmp_path / "f", size, pieces)) == expected


def test_gnu_tar_extracts_it_sparse(tmp_path: Path) -> None:
    source = sparse_file(tmp_path / "source", 64 * MIB, {
        10: random_bytes(3 * MIB), 40 * MIB: b"middle", 64 * MIB - 3: b"end"})
    (tmp_path / "archive.tar").write_bytes(b"".join(sparse_archive("vm3/private.img", source)))
    assert (tmp_path / "archive.tar").stat().st_size % 10240 == 0
    listing = subprocess.run(["tar", "-tvf", str(tmp_path / "archive.tar")],
                             capture_output=True, text=True, check=True).stdout
    assert f" {64 * MIB} " in listing and listing.rstrip().endswith(" vm3/private.img")
    (tmp_path / "out").mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "archive.tar"), "-C", str(tmp_path / "out")],
                   check=True)
    restored = tmp_path / "out/vm3/private.img"
    assert restored.read_bytes() == source.read_bytes()
    assert restored.stat().st_blocks * 512 < 5 * MIB


def test_a_zero_scanned_volume_round_trip(tmp_path: Path) -> None:
    source = sparse_file(tmp_path / "source", 32 * MIB, {MIB: random_bytes(2 * MIB)})
    out = io.BytesIO()
    with BackupWriter(out, PASSPHRASE, params=FAST, chunk_size=MIB) as writer:
        writer.add_bytes("qubes.xml", b"q")
        writer.add_file("vm3/private.img", source, scan_zeros=True)
    reader = BackupReader(io.BytesIO(out.getvalue()), PASSPHRASE)
    assert reader.extract(tmp_path / "staging") == ["qubes.xml", "vm3/private.img"]
    restored = tmp_path / "staging/vm3/private.img"
    assert restored.read_bytes() == source.read_bytes()
    assert restored.stat().st_blocks * 512 < 3 * MIB + 2 * GRAIN


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    backing = sparse_file(tmp_path / "backing", 16 * MIB, {5 * MIB: random_bytes(MIB)})
    result = subprocess.run(["losetup", "--find", "--show", str(backing)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"no loop device here: {result.stderr.strip()}")
    device = Path(result.stdout.strip())
    try:
        yield device, backing
    finally:
        subprocess.run(["losetup", "-d", str(device)], check=False)


def test_a_block_device_is_backed_up_sparse(tmp_path: Path,
                                            loop_device: tuple[Path, Path]) -> None:
    device, backing = loop_device
    backup = make_backup({"qubes.xml": b"q", "vm3/private.img": device})
    reader = BackupReader(io.BytesIO(backup), PASSPHRASE)
    reader.extract(tmp_path / "staging")
    restored = tmp_path / "staging/vm3/private.img"
    assert restored.read_bytes() == backing.read_bytes()
    assert restored.stat().st_blocks * 512 <= MIB + 2 * GRAIN
