"""qubes-vm-update's choice of qubes against a real septad (no qube is started)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.wire import Daemon

SRC = Path(__file__).resolve().parents[2] / "src"


def vm_update(septad: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**septad.env, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "septa.tools.qubes_vm_update", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_dry_run_selects_templates_by_default(septad: Daemon) -> None:
    septad.ok("admin.vm.Create.TemplateVM", payload=b"name=debian-12 label=black")
    septad.ok("admin.vm.Create.TemplateVM", payload=b"name=pinned label=black")
    septad.ok("admin.vm.Create.StandaloneVM", payload=b"name=alone label=green")
    septad.ok("admin.vm.Create.AppVM", arg="debian-12", payload=b"name=work label=red")
    septad.ok("admin.vm.feature.Set", "pinned", arg="skip-update", payload=b"1")

    def dry(*args: str) -> str:
        result = vm_update(septad, "--dry-run", *args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert dry() == "Following qubes will be updated: debian-12\n"
    assert dry("--all") == "Following qubes will be updated: alone, debian-12\n"
    assert dry("--targets", "pinned,work") == "Following qubes will be updated: pinned, work\n"
    assert dry("-T", "--skip", "debian-12") == "No qube selected for update\n"
    unknown = vm_update(septad, "--targets", "nope")
    assert (unknown.returncode, unknown.stderr) == (64, "Unknown qube name: nope\n")
