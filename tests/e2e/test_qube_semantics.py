"""What a Qubes user relies on, checked inside real qubes with qvm-run.

Software installed in the template appears in its AppVMs after their restart; what an
AppVM writes to its root is gone after a restart and never reaches the template; its
private volume survives restarts and ``qvm-volume revert`` brings back the previous
revision; a StandaloneVM owns its root.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Qubes

pytestmark = pytest.mark.e2e


def sh(qubes: Qubes, vm: str, command: str, user: str = "root") -> str:
    result = qubes.run("qvm-run", "-p", "-u", user, vm, command)
    return result.stdout


def exists(qubes: Qubes, vm: str, path: str) -> bool:
    return sh(qubes, vm, f"test -e {path} && echo yes || echo no").strip() == "yes"


def restart(qubes: Qubes, vm: str) -> None:
    qubes.run("qvm-shutdown", "--wait", "--timeout", "120", vm)
    qubes.run("qvm-start", vm)


def test_qvm_run_output_and_exit_code(qubes: Qubes) -> None:
    name = qubes.create("runner")
    try:
        done = qubes.run("qvm-run", "-p", name, "echo out; echo err >&2; exit 7", check=False)
        assert done.returncode == 7
        assert done.stdout == "out\n" and done.stderr == "err\n"
        assert sh(qubes, name, "id -un", user="user").strip() == "user"
        assert sh(qubes, name, "id -un").strip() == "root"
        data = bytes(range(256)) * 4096
        piped = subprocess.run([str(Path(sys.executable).parent / "qvm-run"), "-p", "--no-shell",
                                name, "sha256sum"], input=data, capture_output=True,
                               env=qubes.daemon.env, timeout=300, check=True)
        assert piped.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
        # through qubes.VMShell: the command line, then the data, on one stdin
        shell = subprocess.run([str(Path(sys.executable).parent / "qvm-run"), "-p", name,
                                "sha256sum"], input=data, capture_output=True,
                               env=qubes.daemon.env, timeout=300, check=True)
        assert shell.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    finally:
        qubes.remove(name)


def test_template_software_root_and_private_semantics(qubes: Qubes) -> None:
    app = qubes.create("sem-app")
    try:
        qubes.run("qvm-start", "debian-12")
        sh(qubes, "debian-12", "echo 'echo installed' > /usr/local/bin/septa-tool && "
           "chmod +x /usr/local/bin/septa-tool")
        qubes.run("qvm-shutdown", "--wait", "--timeout", "120", "debian-12")

        qubes.run("qvm-start", app)
        assert sh(qubes, app, "septa-tool").strip() == "installed"
        sh(qubes, app, "echo scratch > /etc/app-root-write")
        sh(qubes, app, "echo one > /home/user/data", user="user")
        restart(qubes, app)
        assert not exists(qubes, app, "/etc/app-root-write"), "root writes must not survive"
        assert sh(qubes, app, "cat /home/user/data").strip() == "one"

        sh(qubes, app, "echo two > /home/user/data", user="user")
        qubes.run("qvm-shutdown", "--wait", "--timeout", "120", app)
        qubes.run("qvm-volume", "revert", f"{app}:private")
        qubes.run("qvm-start", app)
        assert sh(qubes, app, "cat /home/user/data").strip() == "one"
        qubes.run("qvm-shutdown", "--wait", "--timeout", "120", app)

        qubes.run("qvm-start", "debian-12")
        assert not exists(qubes, "debian-12", "/etc/app-root-write")
        sh(qubes, "debian-12", "rm -f /usr/local/bin/septa-tool")
        qubes.run("qvm-shutdown", "--wait", "--timeout", "120", "debian-12")
    finally:
        qubes.run("qvm-kill", "debian-12", check=False)
        qubes.remove(app)


def test_a_standalone_keeps_its_own_root(qubes: Qubes) -> None:
    alone = qubes.create("sem-alone", "-C", "StandaloneVM", "-t", "debian-12")
    try:
        qubes.run("qvm-start", alone)
        sh(qubes, alone, "echo mine > /etc/standalone-only")
        restart(qubes, alone)
        assert sh(qubes, alone, "cat /etc/standalone-only").strip() == "mine"
        qubes.run("qvm-start", "debian-12")
        assert not exists(qubes, "debian-12", "/etc/standalone-only")
    finally:
        qubes.run("qvm-kill", "debian-12", check=False)
        qubes.remove(alone)
