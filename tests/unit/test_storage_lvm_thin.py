"""The lvm_thin driver's Qubes naming and reports (against a stand-in for ``lvm``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from septa.core.errors import StoragePoolException
from septa.storage import VolumeConfig, create_pool, lvm
from septa.storage.lvm import LvmTool, parse_report
from septa.storage.lvm_thin import ThinPool
from tests.storage import fake_lvm
from tests.storage.helpers import MiB, write

VG = "qubes_test"


@pytest.fixture
def pool(tmp_path: Path) -> ThinPool:
    state = tmp_path / "lvm"
    fake_lvm.make_vg(state, VG, "pool0", 256 * MiB)
    made = create_pool("lvm_thin", "vm-pool", volume_group=VG, thin_pool="pool0")
    assert isinstance(made, ThinPool)
    made.lvm = LvmTool([sys.executable, fake_lvm.__file__, str(state)], state / "dev")
    made.setup()
    return made


def test_qubes_lv_names(pool: ThinPool) -> None:
    tpl = pool.init_volume("debian", VolumeConfig(name="root", size=8 * MiB, rw=True,
                                                  save_on_stop=True, revisions_to_keep=1))
    assert tpl.vid == f"{VG}/vm-debian-root"
    tpl.create()
    tpl.start()
    assert set(pool.lvs()) == {"pool0", "vm-debian-root", "vm-debian-root-snap"}
    assert tpl.block_device().path.endswith(f"/{VG}/vm-debian-root-snap")  # type: ignore[union-attr]
    assert tpl.block_device().source_type == "block"  # type: ignore[union-attr]
    write(tpl.block_device(), 0, MiB, 1)  # type: ignore[arg-type]
    tpl.stop()
    names = set(pool.lvs())
    backs = [n for n in names if n.startswith("vm-debian-root-") and n.endswith("-back")]
    assert len(backs) == 1 and names == {"pool0", "vm-debian-root", *backs}
    assert list(tpl.revisions()) == [backs[0].removeprefix("vm-debian-root-")]
    app = pool.init_volume("work", VolumeConfig(name="root", rw=True, snap_on_start=True,
                                                source=tpl.vid))
    app.start()
    assert pool.lvs()["vm-work-root-snap"].origin == "vm-debian-root"
    app.stop()
    assert "vm-work-root-snap" not in pool.lvs()


def test_pool_checks_and_usage(pool: ThinPool, tmp_path: Path) -> None:
    details = pool.usage_details()
    assert details["data_size"] == 256 * MiB and "metadata_size" in details
    missing = create_pool("lvm_thin", "x", volume_group=VG, thin_pool="nothere")
    missing.lvm = pool.lvm  # type: ignore[attr-defined]
    with pytest.raises(StoragePoolException, match="does not exist"):
        missing.setup()
    vol = pool.init_volume("work", VolumeConfig(name="private", size=8 * MiB, rw=True,
                                                save_on_stop=True))
    vol.create()
    not_pool = create_pool("lvm_thin", "y", volume_group=VG, thin_pool="vm-work-private")
    not_pool.lvm = pool.lvm  # type: ignore[attr-defined]
    with pytest.raises(StoragePoolException, match="not a thin pool"):
        not_pool.setup()
    no_vg = create_pool("lvm_thin", "z", volume_group="novg", thin_pool="pool0")
    no_vg.lvm = pool.lvm  # type: ignore[attr-defined]
    with pytest.raises(StoragePoolException, match="novg"):
        no_vg.setup()


def test_sizes_follow_lvm_extents(pool: ThinPool) -> None:
    vol = pool.init_volume("work", VolumeConfig(name="private", size=5 * MiB, rw=True,
                                                save_on_stop=True))
    vol.create()
    assert vol.size == 8 * MiB  # LVM rounds up to its 4 MiB extents


def test_parse_report() -> None:
    report = json.dumps({"report": [{"lv": [
        {"vg_name": "vg", "lv_name": "pool", "pool_lv": "", "lv_size": "1073741824",
         "data_percent": "12.50", "lv_attr": "twi-aotz--", "origin": "",
         "lv_metadata_size": "8388608", "metadata_percent": "50.00"},
        {"vg_name": "vg", "lv_name": "vm-a-private", "pool_lv": "pool", "lv_size": "2147483648B",
         "data_percent": "", "lv_attr": "Vwi---tz--", "origin": "", "lv_metadata_size": "",
         "metadata_percent": ""},
    ]}]})
    lvs = parse_report(report)
    assert lvs["pool"].is_thin_pool and lvs["pool"].usage == 134217728
    assert lvs["pool"].metadata_usage == 4194304
    private = lvs["vm-a-private"]
    assert private.size == 2 << 30 and private.usage == 0 and not private.active
    assert private.metadata_size is None


def test_no_udev_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def fake_run(args: list[str], *, env: dict[str, str] | None = None,
                 input_data: bytes | None = None) -> str:
        calls.append(list(args))
        return ""

    monkeypatch.setattr(lvm, "run", fake_run)
    monkeypatch.setattr(lvm, "udev_running", lambda: False)
    LvmTool().remove("vg", "lv")
    assert calls[-1] == ["lvm", "lvremove", "--config", lvm.NO_UDEV_CONFIG, "--force", "--",
                         "vg/lv"]
    monkeypatch.setattr(lvm, "udev_running", lambda: True)
    LvmTool().rename("vg", "a", "b")
    assert calls[-1] == ["lvm", "lvrename", "--", "vg/a", "vg/b"]
