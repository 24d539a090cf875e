"""The updates proxy's guest side in real qubes, without network wiring: flags turn the
units on through septa-services.target, and an HTTP request in one qube reaches tinyproxy
in the other through the forwarder and a qubes.UpdatesProxy call.

The flags and the target are set by hand here, as dom0's septa.Configure will."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Qubes

pytestmark = pytest.mark.e2e

PROXY_REQUEST = r"""
import socket
s = socket.create_connection(("127.0.0.1", 8082), timeout=60)
s.sendall(b"GET http://127.0.0.1:1/ HTTP/1.0\r\nHost: 127.0.0.1:1\r\n\r\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.decode(errors="replace"))
"""


def root(qubes: Qubes, vm: str, command: str) -> str:
    return qubes.run("qvm-run", "-p", "-u", "root", vm, command).stdout


def turn_on(qubes: Qubes, vm: str, *flags: str) -> None:
    root(qubes, vm, "mkdir -p /run/qubes-service && cd /run/qubes-service && "
                    f"touch {' '.join(flags)} && systemctl start septa-services.target")


def active(qubes: Qubes, vm: str, unit: str) -> str:
    # as root: systemctl reaches systemd without D-Bus (not in the minimal template)
    return qubes.run("qvm-run", "-p", "-u", "root", vm, f"systemctl is-active {unit}",
                     check=False).stdout.strip()


def test_updates_proxy_through_the_forwarder(qubes: Qubes) -> None:
    updatevm, template = qubes.create("upx-proxy"), qubes.create("upx-client")
    policy = qubes.daemon.paths.policy_dir / "30-septa-updates-proxy-test.policy"
    policy.parent.mkdir(parents=True, exist_ok=True)
    try:
        qubes.run("qvm-start", updatevm)
        qubes.run("qvm-start", template)
        detect = "/usr/lib/septa-agent/septa-apt-proxy"
        assert qubes.run("qvm-run", "-p", template, detect).stdout == "DIRECT\n"
        for vm in (updatevm, template):
            root(qubes, vm, "systemctl start septa-services.target")
            assert active(qubes, vm, "septa-updates-proxy.service") == "inactive"
            assert active(qubes, vm, "septa-updates-proxy-forwarder.socket") == "inactive"

        turn_on(qubes, updatevm, "qubes-updates-proxy")
        assert active(qubes, updatevm, "septa-updates-proxy.service") == "active"
        assert active(qubes, updatevm, "septa-updates-proxy-forwarder.socket") == "inactive"
        owner = root(qubes, updatevm, "stat -c %U /proc/$(systemctl show -P MainPID "
                                      "septa-updates-proxy.service)")
        assert owner == "tinyproxy\n"

        turn_on(qubes, template, "updates-proxy-setup")
        assert active(qubes, template, "septa-updates-proxy-forwarder.socket") == "active"
        assert active(qubes, template, "septa-updates-proxy.service") == "inactive"
        assert qubes.run("qvm-run", "-p", template, detect).stdout == "http://127.0.0.1:8082/\n"
        apt = qubes.run("qvm-run", "-p", template, "apt-config dump").stdout
        assert f'Acquire::https::Proxy-Auto-Detect "{detect}";' in apt

        policy.write_text(f"qubes.UpdatesProxy * {template} @default allow target={updatevm}\n")
        answer = qubes.run("qvm-run", "-p", template, "python3 -",
                           stdin=PROXY_REQUEST.encode()).stdout
        # tinyproxy's own answer: it could not reach 127.0.0.1:1 from the updatevm
        assert answer.startswith("HTTP/1.0 ") and "tinyproxy" in answer.lower(), answer

        policy.write_text(f"qubes.UpdatesProxy * {template} @default deny\n")
        refused = qubes.run("qvm-run", "-p", template, "python3 -",
                            stdin=PROXY_REQUEST.encode(), check=False)
        assert "HTTP/" not in refused.stdout

        root(qubes, template, "rm /run/qubes-service/updates-proxy-setup")
        assert qubes.run("qvm-run", "-p", template, detect).stdout == "DIRECT\n"
    finally:
        policy.unlink(missing_ok=True)
        qubes.remove(updatevm)
        qubes.remove(template)
