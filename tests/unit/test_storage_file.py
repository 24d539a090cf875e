"""The file driver: qcow2 overlays, snapshots of a template, revisions, import, clone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from septa.core.errors import StoragePoolException
from septa.storage import VolumeConfig, create_pool
from septa.storage.file import FilePool, FileVolume
from tests.storage.helpers import MiB, filled, read, write

SIZE = 8 * MiB


@pytest.fixture
def pool(tmp_path: Path) -> FilePool:
    made = create_pool("file", "testfile", dir_path=str(tmp_path / "pool"))
    assert isinstance(made, FilePool)
    made.setup()
    return made


def origin(pool: FilePool, vm: str, name: str = "private", keep: int | None = None,
           vm_class: str = "AppVM") -> FileVolume:
    volume = pool.init_volume(vm, VolumeConfig(name=name, size=SIZE, rw=True, save_on_stop=True,
                                               revisions_to_keep=keep), vm_class=vm_class)
    assert isinstance(volume, FileVolume)
    volume.create()
    return volume


def snapshot_of(pool: FilePool, vm: str, source: FileVolume, name: str = "root") -> FileVolume:
    volume = pool.init_volume(vm, VolumeConfig(name=name, rw=True, snap_on_start=True,
                                               source=source.vid, size=source.size))
    assert isinstance(volume, FileVolume)
    volume.create()
    return volume


def run_writing(volume: FileVolume, offset: int, byte: int, length: int = MiB) -> None:
    volume.start()
    write(volume.block_device(), offset, length, byte)
    volume.stop()


def data_of(volume: FileVolume, tmp_path: Path) -> bytes:
    path = volume.export()
    try:
        return Path(path).read_bytes()
    finally:
        volume.export_end(path)


def test_layout_like_qubes(pool: FilePool) -> None:
    tpl = origin(pool, "debian", "root", vm_class="TemplateVM")
    app = origin(pool, "work")
    assert tpl.vid == "vm-templates/debian/root"
    assert app.vid == "appvms/work/private"
    link = Path(pool.dir_path, "appvms/work/private.img")
    assert link.is_symlink() and link.resolve().exists()
    assert tpl.size == SIZE and tpl.usage < SIZE  # sparse
    info = app.info()
    assert list(info) == ["pool", "vid", "size", "usage", "rw", "source", "path",
                          "save_on_stop", "snap_on_start", "revisions_to_keep", "ephemeral",
                          "is_outdated"]
    assert info["pool"] == "testfile" and info["rw"] == "True" and info["source"] == ""
    assert info["revisions_to_keep"] == "1" and info["is_outdated"] == "False"


def test_origin_keeps_data_across_runs(pool: FilePool, tmp_path: Path) -> None:
    vol = origin(pool, "work")
    vol.start()
    assert vol.is_running() and vol.is_dirty()
    dev = vol.block_device()
    assert dev.format == "qcow2" and not dev.readonly and dev.backing
    write(dev, 0, MiB, 0xAB)
    vol.stop()
    assert not vol.is_running() and not vol.is_dirty()
    vol.start()
    assert filled(read(vol.block_device(), tmp_path), 0, MiB, 0xAB)
    vol.stop()
    assert filled(data_of(vol, tmp_path), 0, MiB, 0xAB)


def test_revisions_and_revert(pool: FilePool, tmp_path: Path) -> None:
    vol = origin(pool, "work", keep=2)
    run_writing(vol, 0, 0x01)
    run_writing(vol, 0, 0x02)
    run_writing(vol, 0, 0x03)
    revisions = vol.revisions()
    assert len(revisions) == 2
    assert all(len(stamp) == 19 and "T" in stamp for stamp in revisions.values())
    assert filled(data_of(vol, tmp_path), 0, MiB, 0x03)
    vol.revert()  # the newest revision: the data before the last run
    assert filled(data_of(vol, tmp_path), 0, MiB, 0x02)
    assert len(vol.revisions()) == 2
    oldest = list(vol.revisions())[0]
    vol.revert(oldest)
    assert filled(data_of(vol, tmp_path), 0, MiB, 0x01)
    with pytest.raises(StoragePoolException, match="no revision"):
        vol.revert("999")


def test_revisions_pruned_and_chain_collapsed(pool: FilePool, tmp_path: Path) -> None:
    vol = origin(pool, "work", keep=1)
    for n in range(1, 6):
        run_writing(vol, n * MiB, n)
    assert len(vol.revisions()) == 1
    layers = [p for p in Path(vol.path).parent.joinpath("private.d").iterdir()
              if p.name.endswith(".img")]
    assert len(layers) == 2  # the current layer on the one kept revision
    data = data_of(vol, tmp_path)
    assert all(filled(data, n * MiB, MiB, n) for n in range(1, 6))
    vol.revert()
    data = data_of(vol, tmp_path)
    assert all(filled(data, n * MiB, MiB, n) for n in range(1, 5))
    assert filled(data, 5 * MiB, MiB, 0)


def test_no_revisions_commits_in_place(pool: FilePool, tmp_path: Path) -> None:
    vol = origin(pool, "work", keep=0)
    run_writing(vol, 0, 0x11)
    run_writing(vol, MiB, 0x22)
    assert vol.revisions() == {}
    state = Path(pool.dir_path, "appvms/work/private.d")
    assert len([p for p in state.iterdir() if p.name.endswith(".img")]) == 1
    data = data_of(vol, tmp_path)
    assert filled(data, 0, MiB, 0x11) and filled(data, MiB, MiB, 0x22)


def test_snapshot_sees_template_at_start_and_forgets_writes(pool: FilePool,
                                                            tmp_path: Path) -> None:
    tpl = origin(pool, "debian", "root", vm_class="TemplateVM")
    run_writing(tpl, 0, 0x0A)
    app = snapshot_of(pool, "work", tpl)
    assert app.info()["source"] == tpl.vid
    app.start()
    dev = app.block_device()
    assert dev.format == "qcow2" and dev.backing
    assert filled(read(dev, tmp_path), 0, MiB, 0x0A)
    write(dev, MiB, MiB, 0xEE)
    assert not app.is_outdated()
    # the template is updated while the AppVM runs
    run_writing(tpl, 0, 0x0B)
    assert app.is_outdated()
    still = read(app.block_device(), tmp_path)
    assert filled(still, 0, MiB, 0x0A) and filled(still, MiB, MiB, 0xEE)
    app.stop()
    assert not app.is_outdated()
    app.start()
    fresh = read(app.block_device(), tmp_path)
    assert filled(fresh, 0, MiB, 0x0B)  # the template's current data
    assert filled(fresh, MiB, MiB, 0x00)  # its own writes vanished
    app.stop()
    assert app.usage == 0


def test_many_snapshots_and_template_commits(pool: FilePool, tmp_path: Path) -> None:
    tpl = origin(pool, "debian", "root", vm_class="TemplateVM", keep=1)
    run_writing(tpl, 0, 0x01)
    apps = [snapshot_of(pool, f"app{n}", tpl) for n in range(3)]
    apps[0].start()
    run_writing(tpl, 0, 0x02)
    apps[1].start()
    run_writing(tpl, 0, 0x03)
    run_writing(tpl, 0, 0x04)  # revisions beyond 1 dropped; pinned layers must survive
    apps[2].start()
    seen = [read(a.block_device(), tmp_path)[0] for a in apps]
    assert seen == [0x01, 0x02, 0x04]
    assert [a.is_outdated() for a in apps] == [True, True, False]
    for app in apps:
        app.stop()
    assert len(tpl.revisions()) == 1
    state = Path(pool.dir_path, "vm-templates/debian/root.d")
    assert len([p for p in state.iterdir() if p.name.endswith(".img")]) == 2
    assert data_of(tpl, tmp_path)[0] == 0x04


def test_snapshot_of_source_without_data_fails(pool: FilePool) -> None:
    tpl = pool.init_volume("debian", VolumeConfig(name="root", size=SIZE, rw=True,
                                                  save_on_stop=True), vm_class="TemplateVM")
    app = snapshot_of(pool, "work", tpl)  # type: ignore[arg-type]
    with pytest.raises(StoragePoolException, match="no data"):
        app.start()
    assert not app.is_running()


def test_volatile_is_new_at_each_start(pool: FilePool, tmp_path: Path) -> None:
    vol = pool.init_volume("work", VolumeConfig(name="volatile", size=SIZE, rw=True))
    vol.create()
    vol.start()
    dev = vol.block_device()
    assert dev is not None and dev.format == "raw" and not dev.backing
    write(dev, 0, MiB, 0x77)
    vol.stop()
    assert not Path(dev.path).exists()
    vol.start()
    assert read(Path(dev.path), tmp_path) == bytes(SIZE)
    vol.stop()
    assert vol.revisions() == {} and vol.revisions_to_keep == 0


def test_resize_grows_only(pool: FilePool, tmp_path: Path) -> None:
    vol = origin(pool, "work")
    run_writing(vol, 0, 0x42)
    with pytest.raises(StoragePoolException, match="shrink"):
        vol.resize(SIZE // 2)
    vol.resize(2 * SIZE)
    assert vol.size == 2 * SIZE
    vol.start()
    write(vol.block_device(), 2 * SIZE - MiB, MiB, 0x43)
    vol.stop()
    data = data_of(vol, tmp_path)
    assert len(data) == 2 * SIZE and filled(data, 0, MiB, 0x42)
    assert filled(data, 2 * SIZE - MiB, MiB, 0x43)


def test_resize_while_running_is_kept_at_commit(pool: FilePool, tmp_path: Path) -> None:
    vol = origin(pool, "work")
    vol.start()
    vol.resize(3 * SIZE)
    assert vol.size == 3 * SIZE
    vol.stop()
    assert len(data_of(vol, tmp_path)) == 3 * SIZE


def test_resize_of_pinned_template(pool: FilePool, tmp_path: Path) -> None:
    tpl = origin(pool, "debian", "root", vm_class="TemplateVM")
    run_writing(tpl, 0, 0x05)
    app = snapshot_of(pool, "work", tpl)
    app.start()
    tpl.resize(2 * SIZE)
    assert len(read(app.block_device(), tmp_path)) == SIZE  # the running qube unchanged
    app.stop()
    app.start()
    data = read(app.block_device(), tmp_path)
    assert len(data) == 2 * SIZE and data[0] == 0x05
    app.stop()


def test_resize_refused_on_read_only(pool: FilePool) -> None:
    vol = pool.init_volume("work", VolumeConfig(name="ro", size=SIZE, save_on_stop=True))
    vol.create()
    with pytest.raises(StoragePoolException, match="read-only"):
        vol.resize(2 * SIZE)


def test_import_success_and_failure(pool: FilePool, tmp_path: Path) -> None:
    vol = origin(pool, "work")
    run_writing(vol, 0, 0x31)
    path = vol.import_data(4 * MiB)
    with open(path, "r+b") as handle:
        handle.write(b"\x32" * MiB)
    vol.import_data_end(True)
    data = data_of(vol, tmp_path)
    assert len(data) == 4 * MiB and vol.size == 4 * MiB and filled(data, 0, MiB, 0x32)
    assert len(vol.revisions()) == 1  # the data before the import is kept as a revision
    path = vol.import_data(SIZE)
    with open(path, "r+b") as handle:
        handle.write(b"\x33" * MiB)
    vol.import_data_end(False)
    assert not Path(path).exists()
    assert filled(data_of(vol, tmp_path), 0, MiB, 0x32)
    with pytest.raises(StoragePoolException, match="no import"):
        vol.import_data_end(True)


def test_import_refused_while_running(pool: FilePool) -> None:
    vol = origin(pool, "work")
    vol.start()
    with pytest.raises(StoragePoolException, match="running"):
        vol.import_data(SIZE)
    with pytest.raises(StoragePoolException, match="running"):
        vol.revert()
    vol.stop()


def test_clone_copies_data_and_reports_progress(pool: FilePool, tmp_path: Path) -> None:
    src = origin(pool, "work")
    run_writing(src, 2 * MiB, 0x61)
    dst = origin(pool, "work2")
    seen: list[tuple[int, int]] = []
    dst.import_volume(src, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (SIZE, SIZE)
    assert filled(data_of(dst, tmp_path), 2 * MiB, MiB, 0x61)
    run_writing(src, 2 * MiB, 0x62)  # independent copies
    assert filled(data_of(dst, tmp_path), 2 * MiB, MiB, 0x61)
    assert dst.usage < SIZE


def test_clone_from_another_pool(pool: FilePool, tmp_path: Path) -> None:
    other = create_pool("file-reflink", "other", dir_path=str(tmp_path / "other"),
                        setup_check="False")
    other.setup()
    src = other.init_volume("work", VolumeConfig(name="private", size=SIZE, rw=True,
                                                 save_on_stop=True))
    src.create()
    src.start()
    write(src.block_device(), 0, MiB, 0x71)  # type: ignore[arg-type]
    src.stop()
    dst = origin(pool, "copy")
    dst.import_volume(src)
    assert filled(data_of(dst, tmp_path), 0, MiB, 0x71)


def test_standalone_from_template_snapshot(pool: FilePool, tmp_path: Path) -> None:
    tpl = origin(pool, "debian", "root", vm_class="TemplateVM")
    run_writing(tpl, 0, 0x44)
    app = snapshot_of(pool, "work", tpl)
    standalone = origin(pool, "alone", "root")
    standalone.import_volume(app)  # a snapshot volume's data is its source's
    assert filled(data_of(standalone, tmp_path), 0, MiB, 0x44)


def test_crash_keeps_uncommitted_data(pool: FilePool, tmp_path: Path) -> None:
    vol = origin(pool, "work")
    vol.start()
    write(vol.block_device(), 0, MiB, 0x55)
    vol.state_file.unlink()  # the host rebooted: /run is gone, the running layer is not
    assert not vol.is_running() and vol.is_dirty()
    vol.start()  # the qube goes on with what it wrote
    assert filled(read(vol.block_device(), tmp_path), 0, MiB, 0x55)
    vol.stop()
    assert filled(data_of(vol, tmp_path), 0, MiB, 0x55)


def test_read_only_origin_discards(pool: FilePool, tmp_path: Path) -> None:
    vol = pool.init_volume("work", VolumeConfig(name="ro", size=SIZE, save_on_stop=True))
    assert isinstance(vol, FileVolume)
    vol.create()
    vol.start()
    assert vol.block_device().readonly
    write(vol.block_device(), 0, MiB, 0x66)  # the hypervisor would refuse; test the discard
    vol.stop()
    assert data_of(vol, tmp_path)[0] == 0


def test_snapshots_disabled_writes_in_place(pool: FilePool, tmp_path: Path) -> None:
    vol = origin(pool, "work", keep=-1)
    vol.start()
    dev = vol.block_device()
    assert dev.format == "raw" and not dev.backing
    write(dev, 0, MiB, 0x5A)
    vol.stop()
    assert filled(data_of(vol, tmp_path), 0, MiB, 0x5A) and vol.revisions() == {}


def test_snapshots_disabled_refused_while_pinned(pool: FilePool) -> None:
    tpl = origin(pool, "debian", "root", vm_class="TemplateVM", keep=-1)
    app = snapshot_of(pool, "work", tpl)
    app.start()
    with pytest.raises(StoragePoolException, match="in use"):
        tpl.start()
    app.stop()
    tpl.start()
    with pytest.raises(StoragePoolException, match="directly"):
        app.start()
    tpl.stop()


def test_export_is_stable_while_committing(pool: FilePool, tmp_path: Path) -> None:
    vol = origin(pool, "work", keep=0)
    run_writing(vol, 0, 0x01)
    run_writing(vol, MiB, 0x02)
    path = vol.export()
    run_writing(vol, 0, 0x03)  # commits while the export is read
    data = Path(path).read_bytes()
    assert filled(data, 0, MiB, 0x01) and filled(data, MiB, MiB, 0x02)
    vol.export_end(path)
    assert not Path(path).exists()
    assert filled(data_of(vol, tmp_path), 0, MiB, 0x03)


def test_remove_deletes_everything(pool: FilePool) -> None:
    tpl = origin(pool, "debian", "root", vm_class="TemplateVM")
    run_writing(tpl, 0, 1)
    app = snapshot_of(pool, "work", tpl)
    app.start()
    app.remove()
    tpl.remove()
    assert not any(Path(pool.dir_path, "vm-templates").iterdir())
    assert not any(Path(pool.dir_path, "appvms").iterdir())
    with pytest.raises(StoragePoolException, match="no volume"):
        pool.get_volume(tpl.vid)


def test_discovery_and_listing(pool: FilePool) -> None:
    tpl = origin(pool, "debian", "root", vm_class="TemplateVM")
    origin(pool, "work")
    fresh = create_pool("file", "testfile", dir_path=pool.dir_path)
    vids = [v.vid for v in fresh.list_volumes()]
    assert vids == ["appvms/work/private", "vm-templates/debian/root"]
    found = fresh.get_volume(tpl.vid)
    assert found.size == SIZE and found.save_on_stop
    # a snapshot initialised before its template is loaded finds it on disk
    app = fresh.init_volume("work", VolumeConfig(name="root", rw=True, snap_on_start=True,
                                                 source=tpl.vid))
    assert app.size == SIZE
    app.start()
    app.stop()


def test_verify(pool: FilePool) -> None:
    vol = origin(pool, "work")
    vol.verify()
    link = Path(vol.path)
    os.unlink(link.resolve())
    with pytest.raises(StoragePoolException, match="missing"):
        vol.verify()


def test_create_twice_and_without_size(pool: FilePool) -> None:
    vol = origin(pool, "work")
    with pytest.raises(StoragePoolException, match="already exists"):
        vol.create()
    nosize = pool.init_volume("work", VolumeConfig(name="x", rw=True, save_on_stop=True))
    with pytest.raises(StoragePoolException, match="no size"):
        nosize.create()


def test_pool_space_and_info(pool: FilePool) -> None:
    info = pool.info()
    assert info["driver"] == "file" and info["name"] == "testfile"
    assert int(info["size"]) > 0 and "usage" in info
    assert pool.usage_details()["data_size"] == pool.size


def test_setup_refuses_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad = create_pool("file", "bad", dir_path=str(blocker / "pool"))
    with pytest.raises(StoragePoolException, match="bad"):
        bad.setup()


def test_start_twice_refused(pool: FilePool) -> None:
    vol = origin(pool, "work")
    vol.start()
    with pytest.raises(StoragePoolException, match="already started"):
        vol.start()
    vol.stop()


def test_revert_restores_the_size(pool: FilePool, tmp_path: Path) -> None:
    vol = origin(pool, "work", keep=2)
    run_writing(vol, 0, 1)
    run_writing(vol, 0, 2)
    vol.resize(2 * SIZE)
    run_writing(vol, 0, 3)
    first = list(vol.revisions())[0]
    vol.revert(first)
    assert vol.size == SIZE and data_of(vol, tmp_path) == bytes([1]) * MiB + bytes(SIZE - MiB)


def test_concurrent_snapshots_and_commits(pool: FilePool, tmp_path: Path) -> None:
    import threading

    tpl = origin(pool, "debian", "root", vm_class="TemplateVM", keep=1)
    run_writing(tpl, 0, 1)
    apps = [snapshot_of(pool, f"app{n}", tpl) for n in range(4)]
    errors: list[BaseException] = []

    def cycle(app: FileVolume) -> None:
        try:
            for _ in range(5):
                app.start()
                assert read(app.block_device(), tmp_path / app.vid.replace("/", "_"))[0] >= 1
                app.stop()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    for app in apps:
        (tmp_path / app.vid.replace("/", "_")).mkdir()
    threads = [threading.Thread(target=cycle, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for byte in range(2, 7):
        run_writing(tpl, 0, byte)
    for thread in threads:
        thread.join()
    assert errors == []
    assert data_of(tpl, tmp_path)[0] == 6 and len(tpl.revisions()) == 1
    state = Path(pool.dir_path, "vm-templates/debian/root.d")
    assert len([p for p in state.iterdir() if p.name.endswith(".img")]) == 2
