"""The file-reflink driver's Qubes layout: clean / -dirty / revision files, exports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from septa.core.errors import StoragePoolException
from septa.storage import VolumeConfig, create_pool
from septa.storage.reflink import ReflinkPool, ReflinkVolume
from tests.storage.helpers import MiB, write

SIZE = 8 * MiB


@pytest.fixture
def pool(tmp_path: Path) -> ReflinkPool:
    made = create_pool("file-reflink", "r", dir_path=str(tmp_path / "pool"), setup_check="False")
    assert isinstance(made, ReflinkPool)
    made.setup()
    return made


def origin(pool: ReflinkPool, vm: str, name: str = "private", keep: int = 1) -> ReflinkVolume:
    volume = pool.init_volume(vm, VolumeConfig(name=name, size=SIZE, rw=True, save_on_stop=True,
                                               revisions_to_keep=keep))
    assert isinstance(volume, ReflinkVolume)
    volume.create()
    return volume


def test_qubes_file_names(pool: ReflinkPool) -> None:
    vol = origin(pool, "work", keep=2)
    vm_dir = Path(pool.dir_path, "appvms", "work")
    assert [p.name for p in vm_dir.iterdir()] == ["private.img"]
    vol.start()
    assert sorted(p.name for p in vm_dir.iterdir()) == ["private-dirty.img", "private.img"]
    dev = vol.block_device()
    assert dev.path == str(vm_dir / "private-dirty.img") and dev.format == "raw"
    write(dev, 0, MiB, 1)
    vol.stop()
    vol.start()
    vol.stop()
    names = sorted(p.name for p in vm_dir.iterdir())
    assert names[0] == "private.img"
    assert all(re.fullmatch(r"private\.img\.\d+@\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", n)
               for n in names[1:]) and len(names) == 3
    assert list(vol.revisions()) == ["1", "2"]


def test_snapshot_links_the_source(pool: ReflinkPool) -> None:
    tpl = origin(pool, "debian", "root")
    app = pool.init_volume("work", VolumeConfig(name="root", rw=True, snap_on_start=True,
                                                source=tpl.vid))
    app.start()
    clean = Path(pool.dir_path, "appvms/work/root.img")
    assert clean.stat().st_ino == Path(tpl.path).stat().st_ino
    assert not app.is_outdated()
    app.stop()
    assert not clean.exists()


def test_export_is_a_private_copy(pool: ReflinkPool) -> None:
    vol = origin(pool, "work")
    vol.start()
    write(vol.block_device(), 0, MiB, 0x21)
    vol.stop()
    path = vol.export()
    assert Path(path).name.startswith("private-export.")
    vol.start()
    write(vol.block_device(), 0, MiB, 0x22)
    vol.stop()
    assert Path(path).read_bytes()[0] == 0x21
    vol.export_end(path)
    assert not Path(path).exists()
    with pytest.raises(StoragePoolException, match="not an export"):
        vol.export_end(vol.path)


def test_discovery(pool: ReflinkPool) -> None:
    origin(pool, "work")
    vol = origin(pool, "debian", "root")
    vol.start()  # the -dirty file is not a volume
    fresh = create_pool("file-reflink", "r", dir_path=pool.dir_path, setup_check="False")
    assert [v.vid for v in fresh.list_volumes()] == ["appvms/debian/root", "appvms/work/private"]
    vol.stop()
