"""The linux-kernel driver: kernels by version, read-only volumes that attach nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from septa import paths
from septa.core.errors import StoragePoolException
from septa.storage import VolumeConfig, create_pool
from septa.storage.kernel import KernelPool, KernelVolume


@pytest.fixture
def kernels(tmp_path: Path) -> KernelPool:
    pool = create_pool("linux-kernel", "linux-kernel", dir_path=str(tmp_path / "kernels"))
    assert isinstance(pool, KernelPool)
    pool.setup()
    return pool


def add(pool: KernelPool, tmp_path: Path, version: str, modules: bool = False) -> None:
    src = tmp_path / f"src-{version}"
    src.mkdir()
    (src / "vmlinuz").write_bytes(b"kernel " + version.encode())
    (src / "initrd").write_bytes(b"initramfs " + version.encode())
    if modules:
        (src / "modules.img").write_bytes(b"m" * 4096)
    pool.add_kernel(version, src / "vmlinuz", src / "initrd",
                    src / "modules.img" if modules else None)


def test_default_dir_is_under_qubes_base(septa_root: Path) -> None:
    pool = create_pool("linux-kernel", "linux-kernel")
    assert isinstance(pool, KernelPool)
    assert Path(pool.dir_path) == paths.current().qubes_base / "vm-kernels"
    assert pool.config == {"driver": "linux-kernel", "name": "linux-kernel",
                           "dir_path": pool.dir_path}


def test_add_and_find_kernels(kernels: KernelPool, tmp_path: Path) -> None:
    add(kernels, tmp_path, "6.1.0-septa")
    add(kernels, tmp_path, "6.6.1", modules=True)
    assert kernels.kernel_versions() == ["6.1.0-septa", "6.6.1"]
    vmlinuz, initramfs = kernels.kernel_files("6.6.1")
    assert vmlinuz.read_bytes() == b"kernel 6.6.1" and initramfs.name == "initramfs"
    assert [v.vid for v in kernels.list_volumes()] == ["6.1.0-septa", "6.6.1"]
    with pytest.raises(StoragePoolException, match="already exists"):
        kernels.add_kernel("6.6.1", tmp_path / "src-6.6.1" / "vmlinuz",
                           tmp_path / "src-6.6.1" / "initrd")
    with pytest.raises(StoragePoolException, match="missing file"):
        kernels.kernel_files("5.0")
    kernels.remove_kernel("6.1.0-septa")
    assert kernels.kernel_versions() == ["6.6.1"]


def test_kernel_volume(kernels: KernelPool, tmp_path: Path) -> None:
    add(kernels, tmp_path, "6.6.1", modules=True)
    volume = kernels.init_volume("work", VolumeConfig(name="kernel", vid="6.6.1"))
    assert isinstance(volume, KernelVolume)
    assert volume.vid == "6.6.1" and not volume.rw and volume.revisions_to_keep == 0
    assert volume.block_device() is None
    assert volume.vmlinuz == Path(kernels.dir_path, "6.6.1", "vmlinuz")
    assert volume.modules is not None and volume.size == 4096
    volume.create()
    volume.start()
    other = kernels.init_volume("other", VolumeConfig(name="kernel", vid="6.6.1"))
    other.start()  # many qubes boot one kernel
    assert not volume.is_running()
    volume.stop()
    other.stop()
    info = volume.info()
    assert info["pool"] == "linux-kernel" and info["vid"] == "6.6.1" and info["rw"] == "False"
    assert volume.revisions() == {}
    with pytest.raises(StoragePoolException):
        volume.resize(1 << 20)
    with pytest.raises(StoragePoolException):
        volume.import_data(1 << 20)
    with pytest.raises(StoragePoolException):
        volume.ephemeral = True
    volume.remove()
    assert kernels.kernel_versions() == ["6.6.1"]  # removing a qube keeps the kernel


def test_missing_kernel_refuses_start(kernels: KernelPool) -> None:
    volume = kernels.init_volume("work", VolumeConfig(name="kernel", vid="9.9"))
    with pytest.raises(StoragePoolException, match="9.9"):
        volume.start()
    none = kernels.init_volume("work", VolumeConfig(name="kernel"))
    assert none.vid == "" and none.path == ""
    none.start()
    none.stop()


def test_kernel_volumes_are_read_only(kernels: KernelPool) -> None:
    with pytest.raises(StoragePoolException, match="read-only"):
        kernels.init_volume("work", VolumeConfig(name="kernel", rw=True))
    with pytest.raises(StoragePoolException, match="kernel version"):
        kernels.add_kernel("../evil", "x", "y")
    with pytest.raises(StoragePoolException):
        kernels.revisions_to_keep = 1
    with pytest.raises(StoragePoolException):
        create_pool("linux-kernel", "k", revisions_to_keep="1")


def test_failed_add_leaves_nothing(kernels: KernelPool, tmp_path: Path) -> None:
    (tmp_path / "vmlinuz").write_bytes(b"k")
    with pytest.raises(StoragePoolException, match="cannot add"):
        kernels.add_kernel("6.7", tmp_path / "vmlinuz", tmp_path / "missing-initrd")
    assert list(Path(kernels.dir_path).iterdir()) == []
