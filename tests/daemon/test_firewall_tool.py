"""qvm-firewall against a real septad; then Qubes 4.3's own qvm-firewall on the same rules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import realclient
from tests.wire import Daemon

SRC = Path(__file__).resolve().parents[2] / "src"


def firewall(septad: Daemon, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**septad.env, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run([sys.executable, "-m", "septa.tools.qvm_firewall", *args], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == code, (args, result.stdout, result.stderr)
    return result


@pytest.fixture
def work(septad: Daemon) -> str:
    septad.ok("admin.vm.Create.TemplateVM", payload=b"name=debian-12 label=black")
    septad.ok("admin.vm.Create.AppVM", arg="debian-12", payload=b"name=work label=red")
    return "work"


def raw(septad: Daemon, vm: str) -> list[str]:
    return firewall(septad, "--raw", vm).stdout.splitlines()


def test_edit_rules_with_our_tool(septad: Daemon, work: str) -> None:
    assert raw(septad, work) == ["action=accept"]
    firewall(septad, work, "add", "--before", "0", "accept", "qubes-os.org", "tcp", "443")
    firewall(septad, work, "add", "drop", "proto=icmp")
    firewall(septad, work, "add", "--before", "2", "accept", "specialtarget=dns",
             "comment=Allow DNS")
    assert raw(septad, work) == [
        "action=accept proto=tcp dsthost=qubes-os.org dstports=443-443",
        "action=accept",
        "action=accept specialtarget=dns comment=Allow DNS",
        "action=drop proto=icmp",
    ]
    assert firewall(septad, work, "list").stdout.splitlines()[1] == (
        "0   accept  qubes-os.org  tcp       443      -               -          -       -")
    firewall(septad, work, "del", "--rule-no", "1")
    firewall(septad, work, "del", "drop", "proto=icmp")
    assert raw(septad, work) == [
        "action=accept proto=tcp dsthost=qubes-os.org dstports=443-443",
        "action=accept specialtarget=dns comment=Allow DNS",
    ]
    bad = firewall(septad, work, "add", "accept", "10.0.0.1", "tcp", "99999", code=1)
    assert bad.stderr == "Error: Invalid port: 99999\n"
    firewall(septad, work, "add", "accept", "dstports=", code=2)
    firewall(septad, work, "del", "--rule-no", "7", code=1)
    assert len(raw(septad, work)) == 2
    firewall(septad, "--reload", work)
    firewall(septad, work, "reset")
    assert raw(septad, work) == ["action=accept"]
    firewall(septad, "nosuchqube", code=2)


@pytest.mark.realclient
@pytest.mark.skipif(realclient.available() is not None, reason=str(realclient.available()))
def test_qubes_own_tool_agrees(septad: Daemon, work: str, tmp_path: Path) -> None:
    client = realclient.RealClient(septad.paths.admin_socket, tmp_path / "ns")
    client.run("qvm-firewall", work, "add", "accept", "10.1.0.0/16", "udp", "1200-1400")
    firewall(septad, work, "add", "drop", "example.com", "icmp", "8", "comment=no pings")
    client.run("qvm-firewall", work, "add", "--before", "0", "accept", "specialtarget=dns",
               "expire=+3600")
    firewall(septad, work, "add", "--before", "1", "accept", "fd00::1", "tcp", "22")
    client.run("qvm-firewall", work, "del", "--rule-no", "2")
    firewall(septad, work, "del", "accept", "10.1.0.0/16", "udp", "1200-1400")
    for options in (["--raw"], [], ["--raw", "--reload"]):
        theirs = client.run("qvm-firewall", *options, work, "list").stdout
        ours = firewall(septad, *options, work, "list").stdout
        assert ours.replace("+3600s", "+3599s") == theirs.replace("+3600s", "+3599s")
    assert firewall(septad, "--raw", work).stdout.splitlines()[1:] == [
        "action=accept proto=tcp dst6=fd00::1/128 dstports=22-22",
        "action=drop proto=icmp dsthost=example.com icmptype=8 comment=no pings",
    ]
    client.run("qvm-firewall", work, "reset")
    assert raw(septad, work) == ["action=accept"]
