"""qvm-backup-restore against a real septad, without booting any qube: round trips (from
qvm-backup, and from backups written here with cheap scrypt parameters), conflicts,
verify-only, and every corruption case and failure leaving the host exactly as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from septa.backup import BackupWriter, atomic_output
from septa.core import store
from septa.core.backup_content import qube_content, registry_xml
from tests.backup.helpers import FAST, join_entries, needs_scrypt, sparse_file, split_entries
from tests.backup.qubes_registry import QUBES_XML
from tests.backup.test_qubes_compat import CORE_ADMIN, needs_core_admin
from tests.daemon.test_tools_end_to_end import BIN, tool
from tests.wire import Daemon

PASSPHRASE = "restore me"
RULES = "action=accept proto=tcp dst4=10.1.2.0/24 dstports=443-443\naction=drop\n"


@pytest.fixture
def host(septad: Daemon, tmp_path: Path) -> Daemon:
    """A template, a netvm and ``work`` (settings, firewall, notes and volume data)."""
    tool(septad, "qvm-create", "-C", "TemplateVM", "-l", "black", "tpl")
    tool(septad, "qubes-prefs", "default_template", "tpl")
    tool(septad, "qvm-create", "-l", "red", "--prop", "provides_network=True", "sys-net")
    tool(septad, "qvm-create", "-l", "blue", "work")
    tool(septad, "qvm-prefs", "work", "netvm", "sys-net")
    tool(septad, "qvm-prefs", "work", "vcpus", "3")
    tool(septad, "qvm-features", "work", "service.cups", "1")
    tool(septad, "qvm-tags", "work", "add", "project-x")
    tool(septad, "qvm-notes", "work", "--set", "bank stuff only\nsecond line")
    septad.ok("admin.vm.firewall.Set", "work", payload=RULES.encode())
    data = tmp_path / "data"
    with data.open("wb") as out:
        out.write(os.urandom(3 << 20))
        out.seek(40 << 20)
        out.write(b"far away, after a hole")
    tool(septad, "qvm-volume", "import", "work:private", str(data))
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    return septad


def image(septad: Daemon, qube: str, volume: str = "private") -> Path:
    return septad.paths.qubes_base / "appvms" / qube / f"{volume}.img"


def state(septad: Daemon) -> dict[str, object]:
    """The registry and every file of the pools (names and sizes), and staging leftovers."""
    base = septad.paths.qubes_base
    files = sorted((str(p.relative_to(base)), p.lstat().st_size)
                   for p in base.rglob("*") if p.name != "qubes.xml.lock" and not p.is_dir())
    staging = septad.root / "var/tmp"
    return {"qubes.xml": septad.paths.registry.read_bytes(), "files": files,
            "staging": sorted(staging.iterdir()) if staging.exists() else []}


def write_backup(septad: Daemon, path: Path, names: list[str], *,
                 replace: dict[str, bytes | Path] | None = None,
                 chunk_size: int = 1 << 20, passphrase: str = PASSPHRASE) -> None:
    """A backup of *names* as septad makes them (its registry copy, the qubes' files),
    with cheap scrypt parameters; *replace* gives other content to some members."""
    app = store.load(septad.paths)
    contents = [qube_content(app.domains[name]) for name in names]
    replace = replace or {}
    with atomic_output(path) as out, BackupWriter(out, passphrase, params=FAST,
                                                  chunk_size=chunk_size) as writer:
        writer.add_bytes("qubes.xml", registry_xml(app, contents))
        for content in contents:
            if not content.files:
                writer.add_bytes(f"{content.subdir}empty", b"")
            for item in content.files:
                member = f"{content.subdir}{item.name}"
                other = replace.get(f"{content.vm.name}/{item.name}")
                if isinstance(other, bytes):
                    writer.add_bytes(member, other)
                    continue
                if other is not None:
                    writer.add_file(member, other)
                    continue
                source = item.open_path()
                try:
                    writer.add_file(member, Path(source))
                finally:
                    item.close_path(source)


def restore(septad: Daemon, tmp_path: Path, *args: str,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    return tool(septad, "qvm-backup-restore", "-p", str(tmp_path / "pass"), *args, check=check)


def test_round_trip_through_qvm_backup(host: Daemon, tmp_path: Path) -> None:
    before = image(host, "work").read_bytes()
    firewall = host.ok("admin.vm.firewall.Get", "work")
    tool(host, "qvm-backup", "--yes", "-p", str(tmp_path / "pass"), str(tmp_path / "backup"),
         "work")
    tool(host, "qvm-remove", "-f", "work")

    result = restore(host, tmp_path, str(tmp_path / "backup"))
    assert "-> Done: restored work." in result.stdout
    assert "Reading the backup:" in result.stderr and "(100%)" in result.stderr
    ls = tool(host, "qvm-ls", "--raw-data", "--fields", "NAME,CLASS,LABEL,TEMPLATE,NETVM",
              "work").stdout
    assert ls.splitlines() == ["work|AppVM|blue|tpl|sys-net"]
    assert tool(host, "qvm-prefs", "work", "vcpus").stdout.strip() == "3"
    assert tool(host, "qvm-features", "work", "service.cups").stdout.strip() == "1"
    assert "project-x" in tool(host, "qvm-tags", "work").stdout.split()
    assert host.ok("admin.vm.notes.Get", "work") == "bank stuff only\nsecond line"
    assert host.ok("admin.vm.firewall.Get", "work") == firewall
    assert image(host, "work").read_bytes() == before
    assert state(host)["staging"] == []


def test_template_first_renamed_and_mapped(host: Daemon, tmp_path: Path) -> None:
    root = tmp_path / "root.img"
    root.write_bytes(b"template root!!\n" * 4096)
    private = b"tpl private".ljust(1 << 16, b".")
    write_backup(host, tmp_path / "backup", ["tpl", "sys-net", "work"],
                 replace={"tpl/root.img": root, "tpl/private.img": private})
    before = image(host, "work").read_bytes()
    result = restore(host, tmp_path, "--rename-conflicting", str(tmp_path / "backup"))
    lines = result.stdout.splitlines()
    assert any(line.startswith("     tpl | TemplateVM |") and
               line.endswith("<-- Will be renamed to 'tpl1'") for line in lines), lines
    assert any("work |" in line and "<-- Will be renamed to 'work1' <-- Template change to "
               "'tpl1' <-- netvm change to 'sys-net1'" in line for line in lines), lines
    assert "-> Done: restored tpl1, sys-net1, work1." in result.stdout
    ls = tool(host, "qvm-ls", "--raw-data", "--fields", "NAME,CLASS,TEMPLATE,NETVM").stdout
    assert "work1|AppVM|tpl1|sys-net1" in ls.splitlines()
    assert "work|AppVM|tpl|sys-net" in ls.splitlines(), "the originals are untouched"
    assert image(host, "work1").read_bytes() == before
    tpl_root = host.paths.qubes_base / "vm-templates" / "tpl1" / "root.img"
    assert tpl_root.read_bytes() == root.read_bytes()
    assert (host.paths.qubes_base / "vm-templates" / "tpl1" / "private.img").read_bytes() \
        == private


def test_conflicts_refused_or_skipped(host: Daemon, tmp_path: Path) -> None:
    write_backup(host, tmp_path / "backup", ["sys-net", "work"])
    unchanged = state(host)
    refused = restore(host, tmp_path, str(tmp_path / "backup"), check=False)
    assert refused.returncode == 1
    assert "A VM with the same name already exists on the host!" in refused.stdout
    assert "--rename-conflicting" in refused.stderr
    assert state(host) == unchanged

    tool(host, "qvm-remove", "-f", "work")
    skipped = restore(host, tmp_path, "--skip-conflicting", str(tmp_path / "backup"))
    assert "-> Done: restored work." in skipped.stdout
    assert tool(host, "qvm-prefs", "work", "netvm").stdout.strip() == "sys-net"


def test_selection_exclusion_and_missing_dependencies(host: Daemon, tmp_path: Path) -> None:
    write_backup(host, tmp_path / "backup", ["sys-net", "work"])
    tool(host, "qvm-remove", "-f", "work")
    tool(host, "qvm-remove", "-f", "sys-net")
    tool(host, "qvm-create", "-C", "TemplateVM", "-l", "black", "other")
    tool(host, "qubes-prefs", "default_template", "other")
    tool(host, "qvm-remove", "-f", "tpl")
    unknown = restore(host, tmp_path, str(tmp_path / "backup"), "nope", check=False)
    assert unknown.returncode == 1 and "not in the backup: nope" in unknown.stderr

    result = restore(host, tmp_path, "-x", "sys-net", str(tmp_path / "backup"))
    assert "<-- Template 'tpl' missing, using default 'other' <-- netvm 'sys-net' " \
           "missing, using default (none)" in result.stdout
    assert "Excluded from restore" in result.stdout
    assert tool(host, "qvm-ls", "--raw-list").stdout.split() == ["dom0", "other", "work"]
    assert tool(host, "qvm-prefs", "work", "template").stdout.strip() == "other"
    assert tool(host, "qvm-prefs", "work", "netvm").stdout.strip() == ""


def test_verify_only_changes_nothing(host: Daemon, tmp_path: Path) -> None:
    write_backup(host, tmp_path / "backup", ["sys-net", "work"])
    unchanged = state(host)
    result = restore(host, tmp_path, "--verify-only", str(tmp_path / "backup"))
    assert "complete and authentic" in result.stdout
    assert state(host) == unchanged


def _corrupt(backup: bytes, how: str) -> bytes:
    """*backup* damaged as *how* says, in the member with the most chunks."""
    entries = split_entries(backup)
    members: dict[str, list[int]] = {}
    for index, (name, _) in enumerate(entries):
        if name.endswith(".enc"):
            members.setdefault(name.rsplit(".", 2)[0], []).append(index)
    chunks = max(members.values(), key=len)
    assert len(chunks) >= 3, [name for name, _ in entries]
    if how == "truncated":
        return backup[:len(backup) * 2 // 3]
    if how == "member missing":
        return join_entries(entries[:chunks[0]])
    if how == "changed byte":
        name, data = entries[chunks[1]]
        entries[chunks[1]] = (name, data[:500] + bytes([data[500] ^ 1]) + data[501:])
    elif how == "swapped chunks":
        first, second = chunks[0], chunks[1]
        entries[first], entries[second] = ((entries[first][0], entries[second][1]),
                                           (entries[second][0], entries[first][1]))
    elif how == "reordered chunks":
        first, second = chunks[0], chunks[1]
        entries[first], entries[second] = entries[second], entries[first]
    return join_entries(entries)


@pytest.mark.parametrize(("how", "message"), [
    ("wrong passphrase", "wrong passphrase"),
    ("truncated", "ends"),
    ("member missing", "incomplete"),
    ("changed byte", "private.img: chunk"),
    ("swapped chunks", "was not made for this place"),
    ("reordered chunks", "out of order"),
])
def test_corrupt_backups_restore_nothing(host: Daemon, tmp_path: Path, how: str,
                                        message: str) -> None:
    write_backup(host, tmp_path / "backup", ["sys-net", "work"], chunk_size=1 << 20,
                 passphrase="other" if how == "wrong passphrase" else PASSPHRASE)
    bad = tmp_path / "bad"
    bad.write_bytes(_corrupt((tmp_path / "backup").read_bytes(), how))
    tool(host, "qvm-remove", "-f", "work")
    tool(host, "qvm-remove", "-f", "sys-net")
    unchanged = state(host)
    result = restore(host, tmp_path, str(bad), check=False)
    assert result.returncode == 1, result.stdout
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert state(host) == unchanged


def test_failure_while_creating_removes_every_new_qube(host: Daemon, tmp_path: Path) -> None:
    bad_firewall = (b"<firewall version='2'><rules><rule><properties>"
                    b"<property name='action'>accept</property>"
                    b"<property name='proto'>sctp</property>"
                    b"</properties></rule></rules></firewall>")
    write_backup(host, tmp_path / "backup", ["sys-net", "work"],
                 replace={"work/firewall.xml": bad_firewall})
    tool(host, "qvm-remove", "-f", "work")
    tool(host, "qvm-remove", "-f", "sys-net")
    unchanged = state(host)
    result = restore(host, tmp_path, str(tmp_path / "backup"), check=False)
    assert result.returncode == 1
    assert "work: cannot restore its firewall rules" in result.stderr
    assert "Removing the qubes this restore created: sys-net, work" in result.stderr
    assert state(host) == unchanged


def test_ctrl_c_while_importing_removes_every_new_qube(host: Daemon, tmp_path: Path) -> None:
    big = tmp_path / "big.img"
    with big.open("wb") as out:
        out.truncate(3 << 30)
        out.write(b"start")
    write_backup(host, tmp_path / "backup", ["sys-net", "work"],
                 replace={"work/private.img": big})
    tool(host, "qvm-remove", "-f", "work")
    tool(host, "qvm-remove", "-f", "sys-net")
    unchanged = state(host)
    proc = subprocess.Popen([str(BIN / "qvm-backup-restore"), "-p", str(tmp_path / "pass"),
                             str(tmp_path / "backup")], env=host.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "private volume: 3.0 GiB" in line:
            proc.send_signal(signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + rest
    assert "Removing the qubes this restore created: sys-net, work" in rest
    assert "Traceback" not in rest
    assert state(host) == unchanged


QUBES_FIREWALL = b"""<firewall version="2"><rules>
  <rule><properties><property name="action">accept</property>
    <property name="specialtarget">dns</property></properties></rule>
  <rule><properties><property name="action">accept</property>
    <property name="dsthost">192.168.0.0/24</property><property name="proto">tcp</property>
    </properties></rule>
  <rule><properties><property name="action">drop</property></properties></rule>
</rules></firewall>"""


@needs_core_admin
@needs_scrypt
def test_restore_a_backup_written_by_qubes(septad: Daemon, tmp_path: Path) -> None:
    """Qubes' own writer (qubes/backup.py, volumes through qubes.tarwriter as pax sparse
    files) with a Qubes 4.3 qubes.xml: templates and netvm mapped to this host's."""
    tool(septad, "qvm-create", "-C", "TemplateVM", "-l", "black", "debian-12")
    tool(septad, "qubes-prefs", "default_template", "debian-12")
    (tmp_path / "qubes.xml").write_bytes(QUBES_XML)
    work = sparse_file(tmp_path / "work-private", 40 << 20, {
        0: os.urandom(3 << 20), 30 << 20: b"x" * 5000, (40 << 20) - 4: b"end!"})
    vpn_root = sparse_file(tmp_path / "vpn-root", 8 << 20, {4096: b"vpn root"})
    small = sparse_file(tmp_path / "small", 1 << 20, {0: b"private"})
    (tmp_path / "firewall.xml").write_bytes(QUBES_FIREWALL)
    (tmp_path / "empty").write_bytes(b"")
    backup = tmp_path / "backup"
    written = subprocess.run(
        [sys.executable, str(Path(__file__).parents[1] / "backup/qubes_core_writer_driver.py"),
         str(CORE_ADMIN), str(backup), PASSPHRASE, str(1 << 20), "1",
         str(tmp_path / "qubes.xml"), f"vm7/:private.img:{work}",
         f"vm7/:firewall.xml:{tmp_path / 'firewall.xml'}", f"vm8/:private.img:{small}",
         f"vm9/:root.img:{vpn_root}", f"vm9/:private.img:{small}",
         f"vm10/:empty:{tmp_path / 'empty'}"],
        capture_output=True, text=True, timeout=300)
    assert written.returncode == 0, written.stderr
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")

    result = restore(septad, tmp_path, str(backup))
    assert "-> Done: restored work-dvm, work, sys-vpn, disp-print." in result.stdout
    assert "dom0's home folder (dom0-home/user/): it is not restored" in result.stderr
    assert "Template 'fedora-41' missing, using default 'debian-12'" in result.stdout
    assert "work: property pcie_hotplug='True' not restored (left at its default)" \
        in result.stderr, "a property this daemon does not know is a warning"
    assert "(1 warning(s) above.)" in result.stdout
    ls = tool(septad, "qvm-ls", "--raw-data", "--fields", "NAME,CLASS,LABEL,TEMPLATE,NETVM",
              ).stdout.splitlines()
    assert {"work|AppVM|blue|debian-12|-", "work-dvm|AppVM|red|debian-12|-",
            "sys-vpn|StandaloneVM|red|-|-", "disp-print|DispVM|red|work-dvm|sys-vpn"} \
        <= set(ls), ls
    assert tool(septad, "qvm-prefs", "work", "memory").stdout.strip() == "800"
    assert tool(septad, "qvm-prefs", "work", "default_dispvm").stdout.strip() == "work-dvm"
    assert tool(septad, "qvm-features", "work", "service.cups").stdout.strip() == "1"
    assert "work" in tool(septad, "qvm-tags", "work").stdout.split()
    assert septad.ok("admin.vm.firewall.Get", "work") == (
        "action=accept specialtarget=dns\naction=accept dst4=192.168.0.0/24 proto=tcp\n"
        "action=drop\n")
    assert image(septad, "work").read_bytes() == work.read_bytes()
    standalone = septad.paths.qubes_base / "appvms" / "sys-vpn"
    assert (standalone / "root.img").read_bytes() == vpn_root.read_bytes()
    assert (standalone / "private.img").read_bytes() == small.read_bytes()
