"""Data copies stay sparse and report progress; qemu-img wrappers; the reflink pool checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from septa.core.errors import StoragePoolException
from septa.storage import create_pool, fsutil, qemu_img
from septa.storage.command import ToolError
from septa.storage.copy import clone_or_copy, copy_data, data_extents, reflink_supported
from tests.storage.helpers import MiB, write


def sparse_source(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.truncate(64 * MiB)
        handle.seek(32 * MiB)
        handle.write(b"\x5a" * MiB)
        handle.seek(40 * MiB)
        handle.write(bytes(MiB))  # allocated zeroes


def test_copy_keeps_holes_and_reports_progress(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    sparse_source(src)
    seen: list[tuple[int, int]] = []
    copy_data(src, dst, progress=lambda done, total: seen.append((done, total)))
    assert dst.read_bytes() == src.read_bytes()
    assert fsutil.disk_usage(dst) <= 3 * MiB
    assert seen[0] == (0, 64 * MiB) and seen[-1] == (64 * MiB, 64 * MiB)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_copy_can_skip_zero_blocks(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    sparse_source(src)
    copy_data(src, dst, skip_zeroes=True)
    assert dst.read_bytes() == src.read_bytes()
    assert fsutil.disk_usage(dst) <= MiB + 64 * 1024


def test_copy_with_size(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    sparse_source(src)
    copy_data(src, dst, size=96 * MiB)
    assert dst.stat().st_size == 96 * MiB
    copy_data(src, tmp_path / "short", size=33 * MiB)
    assert (tmp_path / "short").read_bytes() == src.read_bytes()[: 33 * MiB]


def test_data_extents(tmp_path: Path) -> None:
    src = tmp_path / "src"
    sparse_source(src)
    fd = os.open(src, os.O_RDONLY)
    try:
        extents = list(data_extents(fd, 64 * MiB))
    finally:
        os.close(fd)
    assert extents[0][0] <= 32 * MiB < extents[0][1]
    assert all(start < stop for start, stop in extents)


def test_no_reflink_on_this_filesystem_falls_back(tmp_path: Path) -> None:
    if reflink_supported(tmp_path):
        pytest.skip("the test directory's filesystem can reflink")
    src, dst = tmp_path / "src", tmp_path / "dst"
    sparse_source(src)
    assert clone_or_copy(src, dst) is False
    assert dst.read_bytes() == src.read_bytes()


def test_reflink_pool_setup_refuses_without_reflink(tmp_path: Path) -> None:
    if reflink_supported(tmp_path):
        pytest.skip("the test directory's filesystem can reflink")
    pool = create_pool("file-reflink", "r", dir_path=str(tmp_path / "pool"))
    with pytest.raises(StoragePoolException, match="cannot make reflink copies"):
        pool.setup()
    assert not (tmp_path / "pool").exists()  # nothing left behind
    create_pool("file-reflink", "r", dir_path=str(tmp_path / "pool"),
                setup_check="False").setup()


def test_qemu_img_chain_and_convert(tmp_path: Path) -> None:
    base, top, flat = tmp_path / "base.raw", tmp_path / "top.qcow2", tmp_path / "flat.raw"
    fsutil.create_sparse(base, 4 * MiB)
    write(base, 0, MiB, 0x11)
    qemu_img.create(top, 8 * MiB, backing=base, backing_fmt="raw")
    write(top, MiB, MiB, 0x22, "qcow2")
    info = qemu_img.info(top, "qcow2")
    assert info["backing-filename-format"] == "raw" and info["virtual-size"] == 8 * MiB
    seen: list[tuple[int, int]] = []
    qemu_img.convert(top, "qcow2", flat, "raw", progress=lambda d, t: seen.append((d, t)))
    data = flat.read_bytes()
    assert len(data) == 8 * MiB and data[0] == 0x11 and data[MiB] == 0x22
    assert seen[-1] == (8 * MiB, 8 * MiB)
    qemu_img.commit(top)
    assert base.read_bytes()[MiB] == 0x22 and base.stat().st_size == 8 * MiB
    with pytest.raises(ToolError, match="qemu-img"):
        qemu_img.info(tmp_path / "missing", "qcow2")
    with pytest.raises(ToolError, match="convert failed"):
        qemu_img.convert(tmp_path / "missing", "raw", flat, "raw", size=1, progress=print)
