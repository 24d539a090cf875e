"""Our own qvm-* tools against a real septad: the whole management cycle, then a restart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.wire import Daemon

BIN = Path(sys.executable).parent


def tool(septad: Daemon, name: str, *args: str, check: bool = True,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(BIN / name), *args], env=septad.env, capture_output=True,
                            text=True, timeout=60, input=stdin)
    if check:
        assert result.returncode == 0, (name, args, result.stdout, result.stderr)
    return result


def snapshot(septad: Daemon) -> dict[str, str]:
    names = tool(septad, "qvm-ls", "--raw-list").stdout.split()
    state = {"qvm-ls": tool(septad, "qvm-ls", "--raw-data", "--fields",
                            "NAME,CLASS,LABEL,TEMPLATE,NETVM,IP").stdout,
             "global": tool(septad, "qubes-prefs").stdout}
    for name in names:
        state[f"prefs {name}"] = tool(septad, "qvm-prefs", name).stdout
        state[f"features {name}"] = tool(septad, "qvm-features", name).stdout
        state[f"tags {name}"] = tool(septad, "qvm-tags", name).stdout
    return state


def test_manage_qubes_with_our_tools_and_restart(septad: Daemon) -> None:
    tool(septad, "qvm-create", "--class", "TemplateVM", "--label", "black", "debian-12")
    tool(septad, "qubes-prefs", "default_template", "debian-12")
    tool(septad, "qvm-create", "-l", "red", "--prop", "provides_network=True", "sys-net")
    tool(septad, "qubes-prefs", "default_netvm", "sys-net")
    tool(septad, "qvm-create", "-l", "blue", "work")
    tool(septad, "qvm-create", "-C", "StandaloneVM", "-l", "green", "standalone")

    # inherited defaults: from the template and from global properties
    assert tool(septad, "qvm-prefs", "work", "memory").stdout.strip() == "400"
    tool(septad, "qvm-prefs", "debian-12", "memory", "900")
    assert tool(septad, "qvm-prefs", "work", "memory").stdout.strip() == "900"
    assert tool(septad, "qvm-prefs", "work", "netvm").stdout.strip() == "sys-net"
    tool(septad, "qvm-prefs", "work", "memory", "1500")
    assert tool(septad, "qvm-prefs", "work", "memory").stdout.strip() == "1500"
    tool(septad, "qvm-prefs", "--default", "work", "memory")
    assert tool(septad, "qvm-prefs", "work", "memory").stdout.strip() == "900"
    tool(septad, "qvm-prefs", "work", "vcpus", "3")
    bad = tool(septad, "qvm-prefs", "work", "vcpus", "zero", check=False)
    assert bad.returncode != 0 and "vcpus" in bad.stderr
    renamed = tool(septad, "qvm-prefs", "work", "name", "job", check=False)
    assert renamed.returncode != 0

    tool(septad, "qvm-features", "work", "service.cups", "1")
    tool(septad, "qvm-features", "debian-12", "os", "Linux")
    tool(septad, "qvm-tags", "work", "add", "project-x")
    tool(septad, "qvm-notes", "work", "--set", "bank stuff only")

    tool(septad, "qvm-clone", "work", "work-copy")
    assert tool(septad, "qvm-prefs", "work-copy", "vcpus").stdout.strip() == "3"
    assert tool(septad, "qvm-features", "work-copy", "service.cups").stdout.strip() == "1"
    assert "project-x" in tool(septad, "qvm-tags", "work-copy").stdout.split()

    # no renaming: clone, then remove the old one; removal of a used qube is refused
    used = tool(septad, "qvm-remove", "--force", "sys-net", check=False)
    assert used.returncode != 0 and "work" in used.stdout + used.stderr
    tool(septad, "qvm-remove", "--force", "work")
    assert tool(septad, "qvm-check", "work", check=False).returncode != 0
    assert tool(septad, "qvm-check", "work-copy").returncode == 0

    before = snapshot(septad)
    notes = tool(septad, "qvm-notes", "work-copy", "--print").stdout
    septad.stop()
    septad.start()
    assert snapshot(septad) == before
    assert tool(septad, "qvm-notes", "work-copy", "--print").stdout == notes
    assert "work-copy" in before["qvm-ls"] and "standalone|StandaloneVM" in before["qvm-ls"]
