"""The file-reflink driver on a real reflink filesystem (xfs on a loop device)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from septa.storage import VolumeConfig, create_pool
from septa.storage.reflink import ReflinkPool
from tests.storage.helpers import MiB, write
from tests.storage.semantics import CASES, run_case


@pytest.fixture
def pool(xfs_dir: Path) -> ReflinkPool:
    made = create_pool("file-reflink", "xfs", dir_path=str(xfs_dir / secrets.token_hex(4)))
    assert isinstance(made, ReflinkPool)
    made.setup()  # the reflink check passes here
    return made


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_semantics_on_xfs(case: Callable[..., Any], pool: ReflinkPool, tmp_path: Path) -> None:
    run_case(case, pool, tmp_path)


def free_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_frsize * st.f_bavail


def test_snapshots_share_the_template_blocks(pool: ReflinkPool) -> None:
    size = 64 * MiB
    tpl = pool.init_volume("debian", VolumeConfig(name="root", size=size, rw=True,
                                                  save_on_stop=True), vm_class="TemplateVM")
    tpl.create()
    tpl.start()
    write(tpl.block_device(), 0, size, 0x3C)  # type: ignore[arg-type]
    tpl.stop()
    before = free_bytes(pool.dir_path)
    apps = []
    for n in range(8):
        app = pool.init_volume(f"app{n}", VolumeConfig(name="root", rw=True, snap_on_start=True,
                                                       source=tpl.vid, size=size))
        app.start()
        apps.append(app)
    used = before - free_bytes(pool.dir_path)
    assert used < size // 4, f"8 snapshots of a {size}-byte template used {used} bytes"
    tpl.start()  # the template runs and commits while its snapshots run
    tpl.stop()
    assert all(app.is_outdated() for app in apps)
    for app in apps:
        app.stop()


def test_revisions_share_blocks(pool: ReflinkPool) -> None:
    size = 64 * MiB
    vol = pool.init_volume("work", VolumeConfig(name="private", size=size, rw=True,
                                                save_on_stop=True, revisions_to_keep=3))
    vol.create()
    vol.start()
    write(vol.block_device(), 0, size, 0x01)  # type: ignore[arg-type]
    vol.stop()
    before = free_bytes(pool.dir_path)
    for _ in range(3):
        vol.start()
        write(vol.block_device(), 0, MiB, 0x02)  # type: ignore[arg-type]
        vol.stop()
    assert len(vol.revisions()) == 3
    assert before - free_bytes(pool.dir_path) < 16 * MiB
