"""Backup and restore of real qubes: a template and two AppVMs with data written inside
them are backed up to a dom0 file, removed, restored and booted, and the data is found
byte for byte; then a backup kept inside a qube (``qvm-backup --dest-vm``) is restored
from there (``qvm-backup-restore --from-vm``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import TEMPLATE, Qubes

pytestmark = pytest.mark.e2e

PASSPHRASE = "e2e restore passphrase"
MARKER = "/etc/septa-restore-marker"


def write_data(qubes: Qubes, name: str) -> str:
    """20 MiB of random data in the qube's home (its private volume); its sha256."""
    result = qubes.run("qvm-run", "-p", name,
                       "head -c 20971520 /dev/urandom > /home/user/data && sync && "
                       "sha256sum /home/user/data")
    return result.stdout.split()[0]


def read_hash(qubes: Qubes, name: str) -> str:
    return qubes.run("qvm-run", "-p", name, "sha256sum /home/user/data").stdout.split()[0]


def shutdown(qubes: Qubes, *names: str) -> None:
    for name in names:
        if qubes.state(name) != "Halted":
            qubes.run("qvm-shutdown", "--wait", "--timeout", "120", name)


def test_backup_remove_restore_boot(qubes: Qubes, tmp_path: Path) -> None:
    tpl, first, second = "bk-tpl", "bk-one", "bk-two"
    passfile = tmp_path / "pass"
    passfile.write_text(PASSPHRASE + "\n")
    backup = qubes.daemon.root / "dom0-backup"
    try:
        qubes.run("qvm-clone", TEMPLATE, tpl)
        qubes.run("qvm-run", "-p", "-u", "root", tpl, f"echo restored template > {MARKER}")
        shutdown(qubes, tpl)
        qubes.create(first, "-t", tpl)
        qubes.create(second, "-t", tpl)
        qubes.run("qvm-features", first, "restore-test", "yes")
        qubes.run("qvm-tags", second, "add", "restored-tag")
        hashes = {name: write_data(qubes, name) for name in (first, second)}
        shutdown(qubes, first, second)

        qubes.run("qvm-backup", "--yes", "-p", str(passfile), str(backup), tpl, first, second,
                  timeout=1800)
        for name in (first, second, tpl):
            qubes.remove(name)
        restored = qubes.run("qvm-backup-restore", "-p", str(passfile), str(backup),
                             timeout=1800)
        assert f"-> Done: restored {tpl}, {first}, {second}." in restored.stdout, restored
        assert qubes.prefs(first, "template") == tpl
        assert qubes.run("qvm-features", first, "restore-test").stdout.strip() == "yes"
        assert "restored-tag" in qubes.run("qvm-tags", second).stdout.split()
        for name in (first, second):
            assert read_hash(qubes, name) == hashes[name], name
        marker = qubes.run("qvm-run", "-p", first, f"cat {MARKER}").stdout
        assert marker.strip() == "restored template"

        # a backup kept in a qube, read back from there
        holder = second
        qubes.run("qvm-run", "-p", holder, "mkdir -p /home/user/backups")
        shutdown(qubes, first)
        qubes.run("qvm-backup", "--yes", "-p", str(passfile), "--dest-vm", holder,
                  "/home/user/backups", first, timeout=1800)
        name = qubes.run("qvm-run", "-p", holder, "ls /home/user/backups").stdout.split()
        assert len(name) == 1 and name[0].startswith("qubes-backup-"), name
        qubes.remove(first)
        from_qube = qubes.run("qvm-backup-restore", "-p", str(passfile), "--from-vm", holder,
                              f"/home/user/backups/{name[0]}", timeout=1800)
        assert f"-> Done: restored {first}." in from_qube.stdout, from_qube
        assert read_hash(qubes, first) == hashes[first]
    finally:
        for name in (first, second, tpl):
            qubes.remove(name)
