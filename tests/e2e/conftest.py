"""Shared fixtures for end-to-end tests on real qubes.

One septad serves the whole session, under a root in /var/tmp (traversable by the
unprivileged QEMU user, unlike pytest's private tmp dirs), with the debian-12 template
installed from the build cache. Tests create their own qubes in it and share booted
ones where they can; at the end every qube of the session is killed and its root removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.wire import Daemon

BIN = Path(sys.executable).parent
TEMPLATE = "debian-12"


def _libvirt_ok() -> str | None:
    if os.geteuid() != 0:
        return "real qubes need root"
    try:
        import libvirt

        libvirt.open("qemu:///system").close()
    except Exception as exc:  # noqa: BLE001 - any failure means: no hypervisor here
        return f"libvirt is not available: {exc}"
    return None


class Qubes:
    """Runs our tools against the session's septad."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def run(self, tool: str, *args: str, check: bool = True, timeout: float = 600,
            stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(BIN / tool), *args], env=self.daemon.env,
                                capture_output=True, text=True, timeout=timeout,
                                input=stdin.decode() if stdin is not None else None)
        if check and result.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} -> {result.returncode}\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def state(self, name: str) -> str:
        return self.run("qvm-ls", "--raw-data", "-O", "STATE", name).stdout.strip()

    def prefs(self, name: str, prop: str) -> str:
        return self.run("qvm-prefs", name, prop).stdout.strip()

    def create(self, name: str, *args: str) -> str:
        self.run("qvm-create", "-l", "red", *args, name)
        return name

    def remove(self, name: str) -> None:
        if self.run("qvm-check", "-q", name, check=False).returncode == 0:
            self.run("qvm-kill", name, check=False)
            self.run("qvm-remove", "-f", name)


@pytest.fixture(scope="session")
def e2e_daemon() -> Iterator[Daemon]:
    reason = _libvirt_ok()
    if reason is not None:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="septa-e2e-", dir="/var/tmp"))
    root.chmod(0o755)
    daemon = Daemon(root).start()
    qubes = Qubes(daemon)
    try:
        qubes.run("qvm-template", "build", TEMPLATE, timeout=1800)
        yield daemon
    finally:
        subprocess.run([str(BIN / "qvm-kill"), "--all"], env=daemon.env, capture_output=True,
                       timeout=300)
        daemon.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def qubes(e2e_daemon: Daemon) -> Qubes:
    return Qubes(e2e_daemon)
