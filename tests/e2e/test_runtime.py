"""Real qubes under septad: start, state, pause, shutdown, kill, death, boot failure."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from tests.e2e.conftest import Qubes
from tests.wire import request

pytestmark = pytest.mark.e2e


def wait_state(qubes: Qubes, name: str, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while qubes.state(name) != state:
        assert time.monotonic() < deadline, f"{name} never became {state}"
        time.sleep(0.5)


def test_lifecycle_of_an_appvm(qubes: Qubes) -> None:
    name = qubes.create("life")
    try:
        qubes.run("qvm-start", name)
        assert qubes.state(name) == "Running"
        state = qubes.daemon.ok("admin.vm.CurrentState", name)
        assert "power_state=Running" in state
        assert int(state.split()[0].split("=")[1]) >= 400 * 1024
        again = qubes.run("qvm-start", name, check=False)
        assert again.returncode != 0 and "already running" in again.stderr
        assert qubes.daemon.error("admin.vm.Start", name) == "QubesVMNotHaltedError"
        busy = qubes.run("qvm-start", "debian-12", check=False)
        assert busy.returncode != 0 and "while qubes based on it run" in busy.stderr
        tty = qubes.daemon.ok("admin.vm.Console", name)
        assert tty.startswith("/dev/pts/")
        qubes.run("qvm-pause", name)
        assert qubes.state(name) == "Paused"
        qubes.run("qvm-unpause", name)
        assert qubes.state(name) == "Running"
        qubes.run("qvm-shutdown", "--wait", "--timeout", "120", name)
        assert qubes.state(name) == "Halted"
        assert qubes.run("qvm-volume", "info", f"{name}:root", "is_outdated").returncode == 0
        qubes.run("qvm-start", name)
        qubes.run("qvm-kill", name)
        assert qubes.state(name) == "Halted"
    finally:
        qubes.remove(name)


def test_a_qube_that_dies_is_noticed(qubes: Qubes) -> None:
    name = qubes.create("dies")
    sock = socket.socket(socket.AF_UNIX)
    try:
        qubes.run("qvm-start", name)
        sock.settimeout(120)
        sock.connect(str(qubes.daemon.paths.admin_socket))
        sock.sendall(request("admin.Events", name))
        sock.shutdown(socket.SHUT_WR)
        running = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--name"],
                                 capture_output=True, text=True, check=True).stdout.split()
        domain = next(d for d in running if d.startswith("septa-") and d.endswith("-" + name))
        subprocess.run(["virsh", "-c", "qemu:///system", "destroy", domain], check=True,
                       capture_output=True)
        buf = b""
        while b"\0domain-shutdown\0" not in buf:
            chunk = sock.recv(4096)
            assert chunk, "event stream ended before domain-shutdown"
            buf += chunk
        wait_state(qubes, name, "Halted")
        qubes.run("qvm-start", name)
        assert qubes.state(name) == "Running"
    finally:
        sock.close()
        qubes.remove(name)


def test_a_boot_failure_is_reported_with_the_console_tail(qubes: Qubes) -> None:
    name = qubes.create("broken")
    try:
        qubes.run("qvm-prefs", name, "kernelopts", "root=/dev/vda console=hvc0 init=/bin/false")
        qubes.run("qvm-prefs", name, "qrexec_timeout", "40")
        failed = qubes.run("qvm-start", name, check=False)
        assert failed.returncode != 0
        assert "qrexec_timeout" in failed.stderr
        assert "Console log tail" in failed.stderr
        assert qubes.state(name) == "Halted"
        info = qubes.run("qvm-volume", "info", f"{name}:private").stdout
        assert "varlibqubes" in info
        qubes.run("qvm-prefs", "--default", name, "kernelopts")
        qubes.run("qvm-start", name)
        assert qubes.state(name) == "Running"
    finally:
        qubes.remove(name)
