"""Storage on real qubes: a pool on a second directory (an external drive), a reflink
pool on an xfs loop device, a StandaloneVM with its own copy of the root."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Qubes

pytestmark = pytest.mark.e2e
MiB = 1 << 20


def test_a_qube_on_a_pool_in_another_directory(qubes: Qubes) -> None:
    drive = qubes.daemon.root / "external-drive"
    drive.mkdir(mode=0o755)
    qubes.run("qvm-pool", "add", "ext", "file", "-o", f"dir_path={drive}")
    name = qubes.create("on-ext", "-P", "ext")
    try:
        private = qubes.run("qvm-volume", "info", f"{name}:private").stdout
        assert "ext" in private.split("\n")[0]
        assert (drive / "appvms" / name).is_dir()
        root = qubes.run("qvm-volume", "info", f"{name}:root", "pool").stdout.strip()
        assert root == "varlibqubes", "the root snapshot stays beside the template's root"
        qubes.run("qvm-start", name)
        assert qubes.state(name) == "Running"
        qubes.run("qvm-shutdown", "--wait", "--timeout", "120", name)
    finally:
        qubes.remove(name)
        assert not (drive / "appvms" / name).exists()
        qubes.run("qvm-pool", "remove", "ext")


@pytest.fixture
def xfs_mount(qubes: Qubes) -> Iterator[Path]:
    base = qubes.daemon.root / "xfs"
    base.mkdir(mode=0o755)
    image, mountpoint = base / "xfs.img", base / "mnt"
    with open(image, "wb") as handle:
        handle.truncate(2048 * MiB)
    mountpoint.mkdir(mode=0o755)
    made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], capture_output=True)
    mounted = made.returncode == 0 and subprocess.run(
        ["mount", "-o", "loop", str(image), str(mountpoint)], capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot make an xfs loop filesystem here")
    try:
        mountpoint.chmod(0o755)
        yield mountpoint
    finally:
        with contextlib.suppress(OSError):
            subprocess.run(["umount", str(mountpoint)], check=False)
        image.unlink(missing_ok=True)


def test_a_qube_on_a_reflink_pool(qubes: Qubes, xfs_mount: Path) -> None:
    qubes.run("qvm-pool", "add", "fast", "file-reflink", "-o", f"dir_path={xfs_mount}")
    name = qubes.create("on-xfs", "-P", "fast")
    try:
        qubes.run("qvm-start", name)
        assert qubes.state(name) == "Running"
        assert any(p.name.endswith("-dirty.img") for p in (xfs_mount / "appvms" / name).iterdir())
        qubes.run("qvm-shutdown", "--wait", "--timeout", "120", name)
        assert not any(p.name.endswith("-dirty.img")
                       for p in (xfs_mount / "appvms" / name).iterdir())
    finally:
        qubes.remove(name)
        qubes.run("qvm-pool", "remove", "fast")


def test_a_standalone_owns_its_root(qubes: Qubes) -> None:
    name = qubes.create("alone", "-C", "StandaloneVM", "-t", "debian-12")
    try:
        info = dict(line.split(None, 1) for line in
                    qubes.run("qvm-volume", "info", f"{name}:root").stdout.splitlines()
                    if len(line.split(None, 1)) == 2)
        assert info["snap_on_start"] == "False" and info["save_on_stop"] == "True"
        assert info["vid"] == f"appvms/{name}/root"
        assert qubes.prefs(name, "kernel") == qubes.prefs("debian-12", "kernel")
        qubes.run("qvm-start", name)
        # not based on the template: the template may start while it runs
        qubes.run("qvm-start", "debian-12")
        assert qubes.state("debian-12") == "Running"
        qubes.run("qvm-shutdown", "--wait", "--timeout", "120", name, "debian-12")
    finally:
        qubes.run("qvm-kill", "debian-12", check=False)
        qubes.remove(name)
