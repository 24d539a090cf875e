"""The storage model: configurations, Qubes XML, class defaults, pools and the driver registry."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from lxml import etree

from septa.core.errors import QubesValueError, StoragePoolException
from septa.storage import (
    BlockDevice,
    Pool,
    StorageValueError,
    Volume,
    VolumeConfig,
    create_pool,
    default_pools,
    default_volume_configs,
    driver_names,
    driver_parameters,
    get_driver,
    register_driver,
    registry,
)
from septa.storage.copy import Progress
from septa.storage.defaults import DISPVM_VOLATILE_SIZE, PRIVATE_SIZE, ROOT_SIZE
from septa.storage.file import FilePool

GiB = 1 << 30


class MemoryVolume(Volume):
    """A minimal third-party driver: volumes that only remember they exist."""

    def _create(self) -> None:
        self.pool.created.add(self.vid)  # type: ignore[attr-defined]

    def _remove(self) -> None:
        self.pool.created.discard(self.vid)  # type: ignore[attr-defined]

    def _start(self) -> None: ...
    def _stop(self) -> None: ...
    def _resize(self, size: int) -> None: ...
    def _revert(self, revision: str) -> None: ...
    def _import_data(self, size: int) -> str:
        return "/dev/null"
    def _import_data_end(self, success: bool) -> None: ...
    def _import_volume(self, src: Volume, progress: Progress | None) -> None: ...
    def _export(self, progress: Progress | None) -> str:
        return "/dev/null"
    def _export_end(self, path: str) -> None: ...

    @property
    def usage(self) -> int:
        return 0

    @property
    def path(self) -> str:
        return f"memory:{self.vid}"

    def revisions(self) -> dict[str, str]:
        return {}

    def block_device(self) -> BlockDevice:
        return BlockDevice(self.path, self.name)


class MemoryPool(Pool):
    driver = "memory"
    parameters = {"label": "none"}
    volume_class = MemoryVolume

    def __init__(self, name: str, **config: str | int | bool) -> None:
        super().__init__(name, **config)
        self.created: set[str] = set()

    def setup(self) -> None: ...
    def destroy(self) -> None: ...


def test_volume_config_xml_round_trip() -> None:
    xml = ('<volume name="root" pool="varlibqubes" vid="vm-templates/fedora/root" '
           'revisions_to_keep="1" rw="True" save_on_stop="True" snap_on_start="False" '
           'size="10737418240"/>')
    config = VolumeConfig.from_xml(etree.fromstring(xml))
    assert config == VolumeConfig(name="root", pool="varlibqubes", vid="vm-templates/fedora/root",
                                  revisions_to_keep=1, rw=True, save_on_stop=True,
                                  size=10 * GiB)
    again = VolumeConfig.from_xml(etree.fromstring(etree.tostring(config.to_xml())))
    assert again == config
    snap = VolumeConfig(name="root", pool="p", rw=True, snap_on_start=True,
                        source="vm-templates/fedora/root", ephemeral=False)
    attrs = snap.to_attrs()
    assert attrs["source"] == "vm-templates/fedora/root" and attrs["ephemeral"] == "False"
    assert "size" not in attrs and "vid" not in attrs
    assert VolumeConfig.from_attrs(attrs) == snap
    with pytest.raises(QubesValueError):
        VolumeConfig.from_attrs({"name": "x", "rw": "maybe"})


def test_template_defaults() -> None:
    tpl = default_volume_configs("TemplateVM")
    assert list(tpl) == ["root", "private", "volatile", "kernel"]
    assert tpl["root"].save_on_stop and tpl["root"].rw and tpl["root"].size == ROOT_SIZE
    assert tpl["private"].save_on_stop and tpl["private"].size == PRIVATE_SIZE
    assert not tpl["volatile"].save_on_stop and not tpl["volatile"].snap_on_start
    assert not tpl["kernel"].rw and tpl["kernel"].size is None
    standalone = default_volume_configs("StandaloneVM")
    assert standalone["root"].save_on_stop and not standalone["root"].snap_on_start
    assert default_volume_configs("AdminVM") == {}
    with pytest.raises(StorageValueError):
        default_volume_configs("NoSuchVM")


def test_appvm_and_dispvm_defaults_follow_the_template_chain() -> None:
    tpl = {name: config.copy(vid=f"vm-templates/debian/{name}", pool="varlibqubes")
           for name, config in default_volume_configs("TemplateVM").items()}
    app = default_volume_configs("AppVM", tpl)
    root = app["root"]
    assert root.snap_on_start and root.rw and not root.save_on_stop
    assert root.source == "vm-templates/debian/root" and root.pool == "varlibqubes"
    assert root.size == ROOT_SIZE
    assert app["private"].save_on_stop and not app["private"].snap_on_start
    dvm_template = {name: config.copy(vid=f"appvms/dvm/{name}", pool="varlibqubes")
                    for name, config in app.items()}
    disp = default_volume_configs("DispVM", dvm_template)
    assert disp["root"].source == "vm-templates/debian/root"  # the template's template
    assert disp["private"].snap_on_start and disp["private"].source == "appvms/dvm/private"
    assert disp["volatile"].size == DISPVM_VOLATILE_SIZE
    unresolved = default_volume_configs("AppVM")
    assert unresolved["root"].snap_on_start and unresolved["root"].source is None
    with pytest.raises(StorageValueError, match="no vid"):
        default_volume_configs("AppVM", default_volume_configs("TemplateVM"))


def test_pools_from_qubes_xml(tmp_path: Path) -> None:
    elements = [
        f'<pool dir_path="{tmp_path}/a" driver="file" name="varlibqubes" revisions_to_keep="1"/>',
        '<pool driver="lvm_thin" name="vm-pool" thin_pool="vm-pool" volume_group="qubes_dom0"/>',
        f'<pool dir_path="{tmp_path}/b" driver="file-reflink" name="r" setup_check="no"/>',
        f'<pool dir_path="{tmp_path}/k" driver="linux-kernel" name="linux-kernel"/>',
    ]
    pools = [Pool.from_xml(etree.fromstring(text)) for text in elements]
    assert [p.driver for p in pools] == ["file", "lvm_thin", "file-reflink", "linux-kernel"]
    for pool in pools:
        again = Pool.from_xml(etree.fromstring(etree.tostring(pool.to_xml())))
        assert again.config == pool.config and type(again) is type(pool)
    assert pools[1].config == {"driver": "lvm_thin", "name": "vm-pool", "thin_pool": "vm-pool",
                               "volume_group": "qubes_dom0", "revisions_to_keep": "1",
                               "ephemeral_volatile": "False"}
    with pytest.raises(StoragePoolException, match="Unknown storage pool driver"):
        Pool.from_xml(etree.fromstring('<pool driver="zfs-magic" name="z"/>'))
    with pytest.raises(StoragePoolException, match="needs the setting dir_path"):
        create_pool("file", "x")
    with pytest.raises(StoragePoolException, match="no setting colour"):
        create_pool("file", "x", dir_path="/tmp/x", colour="red")
    with pytest.raises(StoragePoolException, match="pool name"):
        create_pool("file", "bad name", dir_path="/tmp/x")


def test_pool_settings(tmp_path: Path) -> None:
    pool = create_pool("file", "p", dir_path=str(tmp_path))
    pool.revisions_to_keep = 3
    pool.ephemeral_volatile = True
    assert pool.config["revisions_to_keep"] == "3" and pool.config["ephemeral_volatile"] == "True"
    with pytest.raises(QubesValueError):
        pool.revisions_to_keep = -2
    with pytest.raises(QubesValueError):
        pool.revisions_to_keep = "many"
    volatile = pool.init_volume("vm", VolumeConfig(name="volatile", size=1, rw=True))
    assert volatile.ephemeral  # the pool's default for volatile volumes
    private = pool.init_volume("vm", VolumeConfig(name="private", size=1, rw=True,
                                                  save_on_stop=True))
    assert not private.ephemeral and private.revisions_to_keep == 3
    with pytest.raises(QubesValueError, match="ephemeral"):
        private.ephemeral = True
    with pytest.raises(QubesValueError):
        private.revisions_to_keep = -5


def test_volume_config_validation(tmp_path: Path) -> None:
    pool = create_pool("file", "p", dir_path=str(tmp_path))
    with pytest.raises(StoragePoolException, match="not supported"):
        pool.init_volume("vm", VolumeConfig(name="root", snap_on_start=True, save_on_stop=True,
                                            source="vm-templates/t/root"))
    with pytest.raises(StoragePoolException, match="needs a source"):
        pool.init_volume("vm", VolumeConfig(name="root", snap_on_start=True))
    with pytest.raises(StoragePoolException, match="only used with snap_on_start"):
        pool.init_volume("vm", VolumeConfig(name="root", source="vm-templates/t/root"))
    with pytest.raises(StoragePoolException, match="qube name"):
        pool.init_volume("../etc", VolumeConfig(name="root"))
    with pytest.raises(StoragePoolException, match="volume id"):
        pool.init_volume("vm", VolumeConfig(name="root", vid="../../etc/passwd"))


def test_volume_identity_and_config(tmp_path: Path) -> None:
    pool = create_pool("file", "p", dir_path=str(tmp_path))
    vol = pool.init_volume("vm", VolumeConfig(name="private", size=5, rw=True,
                                              save_on_stop=True), vm_class="TemplateVM")
    assert vol.vid == "vm-templates/vm/private" and str(vol) == vol.vid
    assert vol == pool.get_volume(vol.vid) and hash(vol) == hash(pool.get_volume(vol.vid))
    config = vol.config
    assert config.vid == vol.vid and config.pool == "p" and config.size == 5
    assert config.revisions_to_keep == 1 and config.ephemeral is None
    assert vol.state_file.name == "volume-running-p:vm--templates-vm-private"


def test_error_names() -> None:
    error = StorageValueError("bad")
    assert isinstance(error, StoragePoolException) and isinstance(error, QubesValueError)
    assert error.wire_name == "QubesValueError"
    assert StoragePoolException("x").wire_name == "StoragePoolException"


def test_registry_builtins_and_parameters() -> None:
    assert {"file", "file-reflink", "lvm_thin", "linux-kernel"} <= set(driver_names())
    assert get_driver("file") is FilePool
    assert driver_parameters("file") == ["dir_path", "ephemeral_volatile", "revisions_to_keep"]
    assert driver_parameters("lvm_thin") == ["ephemeral_volatile", "revisions_to_keep",
                                             "thin_pool", "volume_group"]
    assert driver_parameters("file-reflink") == ["dir_path", "ephemeral_volatile",
                                                 "revisions_to_keep", "setup_check"]
    with pytest.raises(StoragePoolException):
        register_driver(int)  # type: ignore[arg-type]


def test_registry_loads_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = importlib.metadata.EntryPoint(
        name="memory", value=f"{__name__}:MemoryPool", group=registry.ENTRY_POINT_GROUP)
    broken = importlib.metadata.EntryPoint(
        name="broken", value="no_such_module_here:Pool", group=registry.ENTRY_POINT_GROUP)

    def fake_entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return [entry, broken] if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_drivers", dict(registry._drivers))
    registry.reload_entry_points()
    assert "memory" in driver_names() and "broken" not in driver_names()
    pool = create_pool("memory", "mem", label="x")
    assert isinstance(pool, MemoryPool) and pool.config["label"] == "x"
    vol = pool.init_volume("vm", VolumeConfig(name="private", size=1, rw=True, save_on_stop=True))
    vol.create()
    assert pool.created == {"appvms/vm/private"}
    vol.start()
    assert vol.is_running()
    vol.stop()
    vol.remove()
    assert pool.created == set() and pool.list_volumes() == []
    assert Pool.from_xml(pool.to_xml()).driver == "memory"
    monkeypatch.undo()
    registry.reload_entry_points()


def test_default_pools(septa_root: Path) -> None:
    pools = default_pools()
    assert [p.name for p in pools] == ["varlibqubes", "linux-kernel"]
    assert pools[0].driver in ("file", "file-reflink")
    assert pools[0].config["dir_path"] == str(septa_root / "var/lib/qubes")
    assert pools[1].config["dir_path"] == str(septa_root / "var/lib/qubes/vm-kernels")
    for pool in pools:
        pool.setup()


def test_volume_for_another_pool_refused(tmp_path: Path) -> None:
    pool = create_pool("file", "p", dir_path=str(tmp_path))
    with pytest.raises(StoragePoolException, match="configured for the pool 'q'"):
        pool.init_volume("vm", VolumeConfig(name="private", pool="q", size=1))
    assert pool.init_volume("vm", VolumeConfig(name="private", pool="p", size=1)).pool is pool


def test_storage_imports_nothing_above_it() -> None:
    import subprocess
    import sys

    code = ("import sys, septa.storage; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('septa'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    outside = [m for m in out if not m.startswith("septa.storage")]
    assert sorted(outside) == ["septa", "septa.core", "septa.core.errors", "septa.paths"]
