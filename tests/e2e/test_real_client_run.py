"""The unmodified Qubes 4.3 client runs commands in real qubes: qvm-start, qvm-run
(through /usr/lib/qubes/qrexec-client), qvm-shutdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import realclient
from tests.e2e.conftest import Qubes

pytestmark = [
    pytest.mark.e2e, pytest.mark.realclient,
    pytest.mark.skipif(realclient.available() is not None, reason=str(realclient.available())),
]


def test_real_qvm_run(qubes: Qubes, tmp_path: Path) -> None:
    client = realclient.RealClient(qubes.daemon.paths.admin_socket, tmp_path / "ns")
    name = qubes.create("real-run")
    try:
        client.run("qvm-start", name)
        assert qubes.state(name) == "Running"
        again = client.run("qvm-start", name, check=False)
        assert again.returncode != 0
        done = client.run("qvm-run", "-p", name, "echo hi from $(hostname); exit 5", check=False)
        assert done.returncode == 5
        assert done.stdout == f"hi from {name}\n"
        piped = client.run("qvm-run", "-p", "-u", "root", name, "cat; id -u", stdin="typed\n")
        assert piped.stdout == "typed\n0\n"
        argv = client.run("qvm-run", "-p", name, "printf", "%s|", "a b", "c")
        assert argv.stdout == "a b|c|"
        client.run("qvm-shutdown", "--wait", name)
        assert qubes.state(name) == "Halted"
    finally:
        qubes.remove(name)
