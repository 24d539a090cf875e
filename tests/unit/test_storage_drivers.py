"""The Qubes volume semantics, the same for every driver with data.

``file`` runs for real (qemu-img), ``file-reflink`` on the test's filesystem with
``setup_check=False`` (sparse copies instead of reflinks; the real reflinks are tested on
xfs in tests/storage), ``lvm_thin`` against a stand-in for the ``lvm`` command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from septa.core.errors import StoragePoolException
from septa.storage import Pool, Volume, VolumeConfig, create_pool
from septa.storage.lvm import LvmTool
from septa.storage.lvm_thin import ThinPool
from tests.storage import fake_lvm
from tests.storage.helpers import MiB, filled, read, write

SIZE = 8 * MiB
DRIVERS = ["file", "file-reflink", "lvm_thin"]


def make_pool(driver: str, tmp_path: Path) -> Pool:
    if driver == "lvm_thin":
        state = tmp_path / "lvm"
        fake_lvm.make_vg(state, "qubes_test", "pool0", 256 * MiB)
        pool = create_pool("lvm_thin", "thin", volume_group="qubes_test", thin_pool="pool0")
        assert isinstance(pool, ThinPool)
        pool.lvm = LvmTool([sys.executable, fake_lvm.__file__, str(state)], state / "dev")
    elif driver == "file-reflink":
        pool = create_pool(driver, "flat", dir_path=str(tmp_path / "pool"), setup_check=False)
    else:
        pool = create_pool(driver, "files", dir_path=str(tmp_path / "pool"))
    pool.setup()
    return pool


@pytest.fixture(params=DRIVERS)
def pool(request: pytest.FixtureRequest, tmp_path: Path) -> Pool:
    return make_pool(request.param, tmp_path)


MakeOrigin = Callable[..., Volume]


def origin(pool: Pool, vm: str, name: str = "private", keep: int | None = None,
           rw: bool = True) -> Volume:
    volume = pool.init_volume(vm, VolumeConfig(name=name, size=SIZE, rw=rw, save_on_stop=True,
                                               revisions_to_keep=keep))
    volume.create()
    return volume


def snapshot_of(pool: Pool, vm: str, source: Volume, name: str = "root") -> Volume:
    volume = pool.init_volume(vm, VolumeConfig(name=name, rw=True, snap_on_start=True,
                                               source=source.vid, size=source.size))
    volume.create()
    return volume


def device(volume: Volume):  # type: ignore[no-untyped-def]
    dev = volume.block_device()
    assert dev is not None
    return dev


def run_writing(volume: Volume, offset: int, byte: int) -> None:
    volume.start()
    write(device(volume), offset, MiB, byte)
    volume.stop()


def data_of(volume: Volume) -> bytes:
    path = volume.export()
    try:
        with open(path, "rb") as handle:
            return handle.read(volume.size)
    finally:
        volume.export_end(path)


def test_origin_data_survives_runs(pool: Pool, tmp_path: Path) -> None:
    vol = origin(pool, "work")
    assert vol.size == SIZE and not vol.is_running()
    vol.start()
    assert vol.is_running() and vol.is_dirty()
    write(device(vol), 0, MiB, 0xAB)
    vol.stop()
    assert not vol.is_running() and not vol.is_dirty()
    vol.start()
    assert filled(read(device(vol), tmp_path), 0, MiB, 0xAB)
    vol.stop()
    assert filled(data_of(vol), 0, MiB, 0xAB)
    assert 0 < vol.usage < SIZE


def test_revisions_kept_and_reverted(pool: Pool) -> None:
    vol = origin(pool, "work", keep=2)
    for byte in (1, 2, 3):
        run_writing(vol, 0, byte)
    assert len(vol.revisions()) == 2
    vol.revert()
    assert data_of(vol)[0] == 2
    assert len(vol.revisions()) == 2
    vol.revert(list(vol.revisions())[0])
    assert data_of(vol)[0] == 1
    with pytest.raises(StoragePoolException, match="no revision"):
        vol.revert("42")


def test_revisions_to_keep_zero(pool: Pool) -> None:
    vol = origin(pool, "work", keep=0)
    run_writing(vol, 0, 7)
    run_writing(vol, MiB, 8)
    assert vol.revisions() == {}
    data = data_of(vol)
    assert data[0] == 7 and data[MiB] == 8
    with pytest.raises(StoragePoolException, match="no revisions"):
        vol.revert()


def test_snapshot_semantics(pool: Pool, tmp_path: Path) -> None:
    tpl = origin(pool, "debian", "root")
    run_writing(tpl, 0, 0x0A)
    app = snapshot_of(pool, "work", tpl)
    app.start()
    assert filled(read(device(app), tmp_path), 0, MiB, 0x0A)
    write(device(app), MiB, MiB, 0xEE)
    assert not app.is_outdated()
    run_writing(tpl, 0, 0x0B)  # the template is updated while the AppVM runs
    assert app.is_outdated()
    assert app.info()["is_outdated"] == "True"
    running = read(device(app), tmp_path)
    assert running[0] == 0x0A and running[MiB] == 0xEE
    app.stop()
    app.start()
    fresh = read(device(app), tmp_path)
    assert fresh[0] == 0x0B and fresh[MiB] == 0
    assert not app.is_outdated()
    app.stop()
    assert data_of(tpl)[MiB] == 0  # the AppVM never wrote to the template


def test_two_snapshots_are_private(pool: Pool, tmp_path: Path) -> None:
    tpl = origin(pool, "debian", "root")
    one, two = snapshot_of(pool, "one", tpl), snapshot_of(pool, "two", tpl)
    one.start()
    two.start()
    write(device(one), 0, MiB, 1)
    write(device(two), 0, MiB, 2)
    assert read(device(one), tmp_path)[0] == 1 and read(device(two), tmp_path)[0] == 2
    one.stop()
    two.stop()


def test_volatile_starts_empty(pool: Pool, tmp_path: Path) -> None:
    vol = pool.init_volume("work", VolumeConfig(name="volatile", size=SIZE, rw=True))
    vol.create()
    vol.start()
    write(device(vol), 0, MiB, 0x77)
    vol.stop()
    vol.start()
    assert read(device(vol), tmp_path)[:SIZE] == bytes(SIZE)
    vol.stop()


def test_resize(pool: Pool) -> None:
    vol = origin(pool, "work")
    run_writing(vol, 0, 0x42)
    with pytest.raises(StoragePoolException, match="shrink"):
        vol.resize(SIZE // 2)
    vol.resize(2 * SIZE)
    assert vol.size == 2 * SIZE
    vol.start()
    write(device(vol), 2 * SIZE - MiB, MiB, 0x43)
    vol.stop()
    data = data_of(vol)
    assert len(data) == 2 * SIZE and data[0] == 0x42 and data[-1] == 0x43


def test_resize_running(pool: Pool) -> None:
    vol = origin(pool, "work")
    vol.start()
    vol.resize(2 * SIZE)
    vol.stop()
    assert vol.size == 2 * SIZE


def test_import(pool: Pool) -> None:
    vol = origin(pool, "work")
    run_writing(vol, 0, 0x31)
    path = vol.import_data(SIZE)
    with open(path, "r+b") as handle:
        handle.write(b"\x32" * MiB)
    vol.import_data_end(True)
    assert data_of(vol)[0] == 0x32
    path = vol.import_data(SIZE)
    with open(path, "r+b") as handle:
        handle.write(b"\x33" * MiB)
    vol.import_data_end(False)
    assert data_of(vol)[0] == 0x32  # a failed import leaves the old data
    with pytest.raises(StoragePoolException, match="no import"):
        vol.import_data_end(True)


def test_no_start_during_import(pool: Pool) -> None:
    vol = origin(pool, "work")
    vol.import_data(SIZE)
    with pytest.raises(StoragePoolException, match="imported"):
        vol.start()
    path = vol.import_data(SIZE)  # a new import replaces an unfinished one
    with open(path, "r+b") as handle:
        handle.write(b"\x34" * MiB)
    vol.import_data_end(True)
    assert data_of(vol)[0] == 0x34
    vol.start()
    vol.stop()


def test_import_refused_for_snapshot_and_running(pool: Pool) -> None:
    tpl = origin(pool, "debian", "root")
    app = snapshot_of(pool, "work", tpl)
    with pytest.raises(StoragePoolException, match="save_on_stop"):
        app.import_data(SIZE)
    tpl.start()
    with pytest.raises(StoragePoolException, match="running"):
        tpl.import_data(SIZE)
    tpl.stop()


def test_clone(pool: Pool) -> None:
    src = origin(pool, "work")
    run_writing(src, 2 * MiB, 0x61)
    dst = origin(pool, "copy")
    progress: list[tuple[int, int]] = []
    dst.import_volume(src, progress=lambda done, total: progress.append((done, total)))
    assert progress and progress[-1][0] == progress[-1][1]
    assert data_of(dst)[2 * MiB] == 0x61
    run_writing(src, 2 * MiB, 0x62)
    assert data_of(dst)[2 * MiB] == 0x61


def test_clone_across_pools(tmp_path: Path) -> None:
    pools = [make_pool(driver, tmp_path / driver) for driver in DRIVERS]
    src = origin(pools[0], "work")
    run_writing(src, 0, 0x99)
    for target in pools[1:]:
        copy = origin(target, "copy")
        copy.import_volume(src)
        assert data_of(copy)[0] == 0x99
        src = copy


def test_crash_recovery(pool: Pool, tmp_path: Path) -> None:
    vol = origin(pool, "work")
    vol.start()
    write(device(vol), 0, MiB, 0x55)
    vol.state_file.unlink()  # the host went down; its runtime state with it
    assert vol.is_dirty() and not vol.is_running()
    vol.start()
    assert read(device(vol), tmp_path)[0] == 0x55
    vol.stop()
    assert data_of(vol)[0] == 0x55


def test_remove(pool: Pool) -> None:
    tpl = origin(pool, "debian", "root", keep=1)
    run_writing(tpl, 0, 1)
    run_writing(tpl, 0, 2)
    app = snapshot_of(pool, "work", tpl)
    app.start()
    app.stop()
    app.remove()
    tpl.remove()
    assert [v.vid for v in pool.list_volumes()] == []


def test_listing_and_lookup(pool: Pool) -> None:
    one = origin(pool, "one")
    origin(pool, "two")
    assert sorted(v.vid for v in pool.list_volumes()) == sorted(
        [one.vid, one.vid.replace("one", "two")])
    assert pool.get_volume(one.vid) is one
    with pytest.raises(StoragePoolException):
        pool.get_volume("appvms/nope/private" if pool.driver != "lvm_thin"
                        else "qubes_test/vm-nope-private")


def test_info_values(pool: Pool) -> None:
    vol = origin(pool, "work")
    info = vol.info()
    assert info["pool"] == pool.name and info["vid"] == vol.vid
    assert info["size"] == str(SIZE) and info["save_on_stop"] == "True"
    assert info["snap_on_start"] == "False" and info["ephemeral"] == "False"
    assert info["path"]


def test_snapshots_disabled(pool: Pool, tmp_path: Path) -> None:
    vol = origin(pool, "work", keep=-1)
    vol.start()
    write(device(vol), 0, MiB, 0x5A)
    vol.stop()
    assert data_of(vol)[0] == 0x5A and vol.revisions() == {}
    app = snapshot_of(pool, "app", vol)
    vol.start()
    with pytest.raises(StoragePoolException, match="directly"):
        app.start()
    vol.stop()
    app.start()
    assert read(device(app), tmp_path)[0] == 0x5A
    app.stop()


def test_pool_space(pool: Pool) -> None:
    details = pool.usage_details()
    assert details["data_size"] > 0 and "data_usage" in details
    info = pool.info()
    assert info["driver"] == pool.driver and "size" in info
