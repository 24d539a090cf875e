"""The lvm_thin driver on a real thin pool (a volume group on a loop device)."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from septa.storage import VolumeConfig, create_pool
from septa.storage.lvm_thin import ThinPool
from tests.storage.helpers import MiB
from tests.storage.semantics import CASES, run_case

pytestmark = pytest.mark.e2e


@pytest.fixture
def pool(thin_pool: tuple[str, str]) -> Iterator[ThinPool]:
    vg, thin = thin_pool
    made = create_pool("lvm_thin", "thin", volume_group=vg, thin_pool=thin)
    assert isinstance(made, ThinPool)
    made.setup()
    yield made
    for volume in made.list_volumes():
        volume.remove()


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_semantics_on_lvm(case: Callable[..., Any], pool: ThinPool, tmp_path: Path) -> None:
    run_case(case, pool, tmp_path)


def test_qubes_names_and_block_devices(pool: ThinPool, thin_pool: tuple[str, str]) -> None:
    vg, _ = thin_pool
    vol = pool.init_volume("work", VolumeConfig(name="private", size=8 * MiB, rw=True,
                                                save_on_stop=True))
    assert vol.vid == f"{vg}/vm-work-private"
    vol.create()
    vol.start()
    dev = vol.block_device()
    assert dev is not None and dev.source_type == "block"
    assert dev.path == f"/dev/{vg}/vm-work-private-snap"
    assert stat.S_ISBLK(Path(dev.path).stat().st_mode)
    vol.stop()
    assert set(pool.lvs()) >= {"vm-work-private"}
    assert all(name.endswith("-back") for name in pool.lvs() if name.startswith("vm-work-private-"))


def test_missing_thin_pool_refused(thin_pool: tuple[str, str]) -> None:
    vg, _ = thin_pool
    with pytest.raises(Exception, match="does not exist"):
        create_pool("lvm_thin", "nope", volume_group=vg, thin_pool="nothere").setup()
