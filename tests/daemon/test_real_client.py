"""The unmodified Qubes 4.3 admin client drives septad: list, create, prefs, clone, remove."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import realclient
from tests.wire import Daemon

pytestmark = [
    pytest.mark.realclient,
    pytest.mark.skipif(realclient.available() is not None,
                       reason=str(realclient.available())),
]

APPMENUS = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/appmenus.log"
"""


@pytest.fixture
def client(septad: Daemon, tmp_path: Path) -> realclient.RealClient:
    real = realclient.RealClient(septad.paths.admin_socket, tmp_path / "ns")
    real.add_program("qvm-appmenus", APPMENUS)
    return real


def test_real_client_lists_creates_sets_clones_and_removes(
        septad: Daemon, client: realclient.RealClient) -> None:
    client.run("qvm-create", "--class", "TemplateVM", "--label", "black", "debian-12")
    client.run("qubes-prefs", "default_template", "debian-12")
    client.run("qvm-create", "--label", "blue", "work")
    client.run("qvm-create", "-t", "debian-12", "-l", "red", "--prop", "vcpus=3", "other")
    assert septad.ok("admin.vm.property.Get", "other", arg="vcpus") == "default=False type=int 3"

    listing = client.run("qvm-ls", "--raw-data", "--fields", "NAME,CLASS,STATE,LABEL,TEMPLATE")
    rows = set(listing.stdout.splitlines())
    assert "work|AppVM|Halted|blue|debian-12" in rows
    assert "debian-12|TemplateVM|Halted|black|-" in rows
    assert any(row.startswith("dom0|AdminVM|Running|black") for row in rows)

    client.run("qvm-prefs", "work", "memory", "1234")
    assert client.run("qvm-prefs", "work", "memory").stdout.strip() == "1234"
    assert septad.ok("admin.vm.property.Get", "work", arg="memory") == \
        "default=False type=int 1234"
    prefs = client.run("qvm-prefs", "work").stdout
    assert any(line.split()[:3] == ["memory", "-", "1234"] for line in prefs.splitlines())
    client.run("qvm-prefs", "--default", "work", "vcpus")
    client.run("qvm-features", "work", "my-feature", "on")
    client.run("qvm-tags", "work", "add", "managed")
    bad = client.run("qvm-prefs", "work", "memory", "-5", check=False)
    assert bad.returncode != 0

    client.run("qvm-clone", "work", "work2")
    assert septad.ok("admin.vm.property.Get", "work2", arg="memory") == \
        "default=False type=int 1234"
    assert septad.ok("admin.vm.property.Get", "work2", arg="template") == \
        "default=False type=vm debian-12"
    assert septad.ok("admin.vm.feature.Get", "work2", arg="my-feature") == "on"
    assert septad.ok("admin.vm.tag.Get", "work2", arg="managed") == "1"
    assert "--source work work2" in (client.dir / "bin" / "appmenus.log").read_text()

    in_use = client.run("qvm-remove", "--force", "debian-12", check=False)
    assert in_use.returncode != 0
    assert "debian-12" in septad.ok("admin.vm.List")
    client.run("qvm-remove", "--force", "work")
    assert "work " not in septad.ok("admin.vm.List")
    assert client.run("qvm-check", "work2").returncode == 0
    assert client.run("qvm-check", "work", check=False).returncode != 0
