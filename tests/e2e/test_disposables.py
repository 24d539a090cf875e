"""Disposable qubes: qvm-run --dispvm runs one command in a new qube that is then
destroyed with all its volumes; nothing of it is left."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Qubes

pytestmark = pytest.mark.e2e


def test_a_disposable_runs_one_command_and_leaves_no_trace(qubes: Qubes) -> None:
    dvm = qubes.create("dvm-base", "--prop", "template_for_dispvms=True")
    try:
        qubes.run("qvm-start", dvm)
        qubes.run("qvm-run", "-p", dvm, "echo from-the-dvm > /home/user/seed")
        qubes.run("qvm-shutdown", "--wait", "--timeout", "120", dvm)
        before = set(qubes.run("qvm-ls", "--raw-list").stdout.split())
        done = qubes.run("qvm-run", "-p", f"--dispvm={dvm}",
                         "cat /home/user/seed; hostname; echo scratch > /home/user/seed")
        lines = done.stdout.split()
        assert lines[0] == "from-the-dvm"
        assert lines[1].startswith("disp")
        after = set(qubes.run("qvm-ls", "--raw-list").stdout.split())
        assert after == before, "the disposable must be gone"
        appvms = qubes.daemon.paths.qubes_base / "appvms"
        assert not (appvms / lines[1]).exists()
        # the disposable's writes never reached its template's private volume
        qubes.run("qvm-start", dvm)
        assert qubes.run("qvm-run", "-p", dvm, "cat /home/user/seed").stdout == "from-the-dvm\n"
    finally:
        qubes.remove(dvm)
