"""``admin.backup.Info/Execute/Cancel`` and ``qvm-backup`` against a real septad (no qube
boots: the volumes of halted qubes are exported as they are)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from septa.backup import BackupReader
from septa.client.transport import Transport
from tests.wire import Daemon

BIN = Path(sys.executable).parent
PASSPHRASE = "correct horse"


@pytest.fixture
def septad(septa_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """septad with a cheap key derivation (N = 2^14; the cost is not what is tested)."""
    monkeypatch.setenv("SEPTA_BACKUP_SCRYPT_LOG_N", "14")
    daemon = Daemon(septa_root).start()
    yield daemon
    daemon.stop()


def tool(septad: Daemon, name: str, *args: str, stdin: bytes | None = None,
         ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(BIN / name), *args], env=septad.env, input=stdin,
                          capture_output=True, timeout=600, check=False)


def make_qube(septad: Daemon, name: str, data: bytes) -> None:
    if "tpl" not in septad.ok("admin.vm.List").split():
        septad.ok("admin.vm.Create.TemplateVM", payload=b"name=tpl label=black")
    septad.ok("admin.vm.Create.AppVM", arg="tpl", payload=f"name={name} label=red".encode())
    image = septad.root / f"{name}.img"
    image.write_bytes(data)
    done = tool(septad, "qvm-volume", "import", f"{name}:private", str(image))
    assert done.returncode == 0, done.stderr


def profile(septad: Daemon, name: str, text: str) -> None:
    directory = septad.paths.backup_profiles_dir
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.conf").write_text(text)


def test_info_execute_and_read_back(septad: Daemon) -> None:
    data = os.urandom(3 << 20) + bytes(5 << 20) + b"tail"
    make_qube(septad, "work", data)
    septad.ok("admin.vm.notes.Set", "work", b"my notes")
    out = septad.root / "out"
    out.mkdir()
    profile(septad, "daily", f"include: [work]\ndestination_vm: dom0\n"
                             f"destination_path: {out}\npassphrase_text: {PASSPHRASE}\n")
    info = septad.ok("admin.backup.Info", arg="daily")
    assert "             work |           VM |" in info
    assert info.endswith("VMs not selected for backup:\n - dom0\n - tpl\n")

    progress: list[str] = []
    listener = threading.Thread(target=_collect_progress, args=(septad, progress), daemon=True)
    listener.start()
    time.sleep(0.5)
    septad.ok("admin.backup.Execute", arg="daily")
    [backup] = list(out.iterdir())
    assert backup.name.startswith("qubes-backup-")
    staging = septad.root / "staging"
    staging.mkdir()
    with backup.open("rb") as stream:
        reader = BackupReader(stream, PASSPHRASE)
        assert b'<feature name="backup-content">1</feature>' in reader.read_qubes_xml()
        names = reader.extract(staging)
    qid = septad.ok("admin.vm.property.Get", "work", arg="qid").split()[-1]
    assert sorted(names) == sorted([f"vm{qid}/private.img", f"vm{qid}/notes.txt"])
    restored = (staging / f"vm{qid}/private.img").read_bytes()
    assert hashlib.sha256(restored[:len(data)]).digest() == hashlib.sha256(data).digest()
    assert not any(restored[len(data):]), "the rest of the volume is zeros"
    assert (staging / f"vm{qid}/notes.txt").read_text() == "my notes"
    listener.join(5)
    assert progress and progress[-1] == "100"


def _collect_progress(septad: Daemon, progress: list[str]) -> None:
    transport = Transport(septad.paths.admin_socket)
    for event in transport.events("dom0", "admin.Events", deadline=time.monotonic() + 300):
        if event.name == "backup-progress" and event.kwargs.get("backup_profile") == "daily":
            progress.append(event.kwargs["progress"])
            if event.kwargs["progress"] == "100":
                return


def test_profile_errors_are_clear(septad: Daemon) -> None:
    assert "does not exist" in _message(septad, "admin.backup.Info", "nope")
    assert septad.error("admin.backup.Execute", arg="a/b") == "ProtocolError"
    profile(septad, "broken", "include: [\n")
    assert "not YAML" in _message(septad, "admin.backup.Info", "broken")
    profile(septad, "nopass", "include:\ndestination_vm: dom0\ndestination_path: /tmp\n")
    assert "passphrase" in _message(septad, "admin.backup.Execute", "nopass")
    profile(septad, "ghost", f"include: [ghost]\ndestination_vm: dom0\n"
                             f"destination_path: /tmp\npassphrase_text: {PASSPHRASE}\n")
    assert "No such qube: ghost" in _message(septad, "admin.backup.Info", "ghost")
    assert "not running" in _message(septad, "admin.backup.Cancel", "ghost")


def _message(septad: Daemon, method: str, arg: str) -> str:
    answer = septad.call(method, arg=arg)
    assert answer.startswith(b"2\0"), answer[:200]
    return answer.decode(errors="replace")


def test_cancel_leaves_no_file(septad: Daemon) -> None:
    make_qube(septad, "big", os.urandom(160 << 20))
    out = septad.root / "out"
    out.mkdir()
    profile(septad, "big", f"include: [big]\ndestination_vm: dom0\n"
                           f"destination_path: {out}/big.bin\npassphrase_text: {PASSPHRASE}\n")
    answer: list[bytes] = []
    execute = threading.Thread(
        target=lambda: answer.append(septad.call("admin.backup.Execute", arg="big")))
    execute.start()
    deadline = time.monotonic() + 60
    while not any(out.iterdir()):
        assert time.monotonic() < deadline, "the backup never started writing"
        time.sleep(0.2)
    assert septad.error("admin.backup.Execute", arg="big") == "BackupAlreadyRunningError"
    septad.ok("admin.backup.Cancel", arg="big")
    execute.join(120)
    assert answer[0].startswith(b"2\0BackupCancelledError\0")
    assert list(out.iterdir()) == [], "nothing that looks like a backup is left"


@pytest.mark.parametrize("compress", [True, False])
def test_qvm_backup_to_stdout(septad: Daemon, compress: bool) -> None:
    data = os.urandom(1 << 20)
    make_qube(septad, "work", data)
    passfile = septad.root / "pass"
    passfile.write_text(PASSPHRASE + "\n")
    done = tool(septad, "qvm-backup", "--yes", "-p", str(passfile),
                *([] if compress else ["--no-compress"]), "-", "work")
    assert done.returncode == 0, done.stderr
    assert b"Making a backup... 100.00%" in done.stderr
    assert b"             work |" in done.stderr, "the summary goes to stderr with '-'"
    assert list(septad.paths.backup_profiles_dir.iterdir()) == [], "temporary profile removed"
    staging = septad.root / "staging"
    staging.mkdir()
    backup = septad.root / "backup.bin"
    backup.write_bytes(done.stdout)
    with backup.open("rb") as stream:
        reader = BackupReader(stream, PASSPHRASE)
        assert reader.header.compressed is compress
        reader.extract(staging)
    [image] = staging.glob("vm*/private.img")
    assert image.read_bytes()[:len(data)] == data
