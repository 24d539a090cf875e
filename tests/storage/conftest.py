"""Fixtures with real block devices: an xfs filesystem on a loop device, an LVM thin pool.

Each is made in the test's temporary directory and always taken apart at the end (even
when a test fails); the tests using them are skipped where the host cannot make them
(not root, no loop devices, no device-mapper thin target).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from septa.storage.lvm import NO_UDEV_CONFIG, udev_running

MiB = 1 << 20


def _need_root_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices)")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")


def _run(*args: str) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, check=False,
                            env={**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1"})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _lvm(command: str, *args: str) -> str:
    extra = [] if udev_running() else ["--config", NO_UDEV_CONFIG]
    return _run("lvm", command, *extra, *args)


@pytest.fixture(scope="module")
def xfs_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A mounted xfs filesystem made with reflink=1 (300 MiB, sparse)."""
    _need_root_tools("mkfs.xfs", "mount", "umount")
    base = tmp_path_factory.mktemp("xfs")
    image, mountpoint = base / "xfs.img", base / "mnt"
    with open(image, "wb") as handle:
        handle.truncate(300 * MiB)
    mountpoint.mkdir()
    try:
        _run("mkfs.xfs", "-q", "-m", "reflink=1", str(image))
        _run("mount", "-o", "loop", str(image), str(mountpoint))
    except RuntimeError as exc:
        image.unlink()
        pytest.skip(f"cannot mount an xfs image: {exc}")
    try:
        yield mountpoint
    finally:
        with contextlib.suppress(RuntimeError):
            _run("umount", str(mountpoint))
        if os.path.ismount(mountpoint):
            _run("umount", "-l", str(mountpoint))
        image.unlink()


def _thin_target_available() -> bool:
    if not os.path.exists("/dev/mapper/control") or shutil.which("dmsetup") is None:
        return False
    try:
        targets = _run("dmsetup", "targets")
    except RuntimeError:
        return False
    return "thin-pool" in targets


@pytest.fixture(scope="module")
def thin_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``(volume_group, thin_pool)`` on a loop device over a sparse file (512 MiB)."""
    _need_root_tools("lvm", "losetup")
    if not _thin_target_available():
        pytest.skip("the kernel has no device-mapper thin-pool target")
    base = tmp_path_factory.mktemp("lvm")
    image = base / "pv.img"
    with open(image, "wb") as handle:
        handle.truncate(512 * MiB)
    vg, pool = f"septa_test_{secrets.token_hex(3)}", "pool0"
    loop = ""
    steps_done: list[str] = []
    try:
        loop = _run("losetup", "--find", "--show", str(image)).strip()
        _lvm("pvcreate", "-q", loop)
        steps_done.append("pv")
        _lvm("vgcreate", "-q", vg, loop)
        steps_done.append("vg")
        _lvm("lvcreate", "-q", "--type", "thin-pool", "-L", "400M", "-n", pool, vg)
        yield vg, pool
    finally:
        errors = []
        for step, command in (("vg", ("vgremove", "-f", "-q", vg)),
                              ("pv", ("pvremove", "-q", loop))):
            if step in steps_done:
                try:
                    _lvm(*command)
                except RuntimeError as exc:
                    errors.append(str(exc))
        if loop:
            try:
                _run("losetup", "-d", loop)
            except RuntimeError as exc:
                errors.append(str(exc))
        image.unlink(missing_ok=True)
        if errors:
            raise RuntimeError("cleaning up the test volume group failed: " + "; ".join(errors))
