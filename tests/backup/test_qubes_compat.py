"""Compatibility with Qubes' own code, both ways.

- Qubes 4.3's restore (``qubesadmin.backup.restore.BackupRestore``, from the admin
  client at /opt/qubesadmin-4.3, see tests/realclient.py) reads backups we wrote: its
  header check, qubes.xml parsing and extraction worker, with only the final data import
  replaced by handlers saving files (``qubes_restore_driver.py``).
- Our reader reads backups laid out by Qubes: by the client test suite's own writer
  (``qubes_writer_driver.py``), and by the exact command pipeline of Qubes' writer
  (``tar -Pc --sparse --xform``, ``split``, ``scrypt enc``, ``tar -cO --posix``), which
  needs only the command-line tools.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from septa.backup import BackupReader, BackupWriter, atomic_output
from tests.backup.helpers import FAST, needs_scrypt, random_bytes, sparse_file
from tests.realclient import CLIENT_DIR

HERE = Path(__file__).parent
PASS = "qubes"
V4_QUBES_XML = CLIENT_DIR / "qubesadmin/tests/backup/v4-qubes.xml"

needs_client = pytest.mark.skipif(
    not (CLIENT_DIR / "qubesadmin/backup/restore.py").exists(),
    reason=f"the Qubes 4.3 admin client is not installed at {CLIENT_DIR}")


def _run_client(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    # our interpreter: the client's own venv lacks lxml, which its backup code imports
    return subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(CLIENT_DIR)})


def _our_backup(tmp_path: Path, compression: str | None,
                scan_zeros: bool = False) -> tuple[Path, Path]:
    """A backup of ours holding Qubes' test qubes.xml (test-work at vm3/), a sparse
    20 MiB private.img over several chunks and a firewall.xml."""
    qubes_xml = V4_QUBES_XML.read_bytes().replace(b'backup-path">appvms/test-work',
                                                  b'backup-path">vm3/')
    volume = sparse_file(tmp_path / "volume", 20 << 20, {
        1000: random_bytes(3 << 20), 19 << 20: b"end of volume"})
    backup = tmp_path / "backup"
    with atomic_output(backup) as out, BackupWriter(out, PASS, params=FAST,
                                                    compression_filter=compression,
                                                    chunk_size=1 << 20) as writer:
        writer.add_bytes("qubes.xml", qubes_xml)
        writer.add_file("vm3/private.img", volume, scan_zeros=scan_zeros)
        writer.add_bytes("vm3/firewall.xml", b"<firewall version='2'><rules/></firewall>")
    return backup, volume


@needs_client
@needs_scrypt
@pytest.mark.parametrize(("compression", "scan_zeros"),
                         [("gzip", False), (None, False), ("gzip", True)])
def test_qubes_restore_reads_our_backup(tmp_path: Path, compression: str | None,
                                        scan_zeros: bool) -> None:
    """Volumes archived by GNU tar (files) or by our pax sparse writer (devices)."""
    backup, volume = _our_backup(tmp_path, compression, scan_zeros)
    work = tmp_path / "work"
    result = _run_client("qubes_restore_driver.py", str(backup), PASS, str(work),
                         "vm3/private.img", "vm3/firewall.xml")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["header"] == {
        "version": 4, "encrypted": True, "compressed": compression is not None,
        "compression_filter": "gzip", "hmac_algorithm": "scrypt",
        "backup_id": BackupReader(backup.open("rb"), PASS).header.backup_id}
    assert found["vms"]["test-work"] == "vm3/"
    assert (work / "vm3--private.img").read_bytes() == volume.read_bytes()
    assert (work / "vm3--private.img.size").read_text() == str(20 << 20)
    assert (work / "vm3--firewall.xml").read_bytes() == \
        b"<firewall version='2'><rules/></firewall>"
    assert "ERROR" not in result.stderr


@needs_client
@needs_scrypt
def test_qubes_verify_only_accepts_our_backup(tmp_path: Path) -> None:
    backup, _ = _our_backup(tmp_path, "gzip")
    result = _run_client("qubes_restore_driver.py", str(backup), PASS, str(tmp_path / "w"),
                         "vm3/private.img", "--verify-only")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "w/vm3--private.img").exists()


@needs_client
@needs_scrypt
def test_qubes_restore_refuses_our_backup_with_a_wrong_passphrase(tmp_path: Path) -> None:
    backup, _ = _our_backup(tmp_path, "gzip")
    result = _run_client("qubes_restore_driver.py", str(backup), "not qubes",
                         str(tmp_path / "w"), "vm3/private.img")
    assert result.returncode != 0 and "Is the password correct?" in result.stderr


@needs_client
@needs_scrypt
def test_qubes_restore_refuses_a_changed_chunk_of_ours(tmp_path: Path) -> None:
    backup, _ = _our_backup(tmp_path, "gzip")
    data = bytearray(backup.read_bytes())
    data[len(data) // 2] ^= 1
    backup.write_bytes(bytes(data))
    result = _run_client("qubes_restore_driver.py", str(backup), PASS, str(tmp_path / "w"),
                         "vm3/private.img", "--verify-only")
    assert result.returncode != 0 and "failed to decrypt" in result.stderr


# vmN directories the client's test writer uses for its qubes (its MANGLED_SUBDIRS_R4)
QUBES_TEST_DIRS = {"vm3": "appvms/test-work", "vm7": "vm-templates/test-fedora-25-clone",
                   "vm31": "appvms/test-custom-template-appvm",
                   "vm4": "appvms/test-standalonevm", "vm30": "appvms/test-proxy",
                   "vm9": "appvms/test-hvm", "vm6": "appvms/test-net",
                   "vm20": "appvms/test-d8test"}


@needs_client
@needs_scrypt
@pytest.mark.parametrize("compression", ["gzip", ""])
def test_we_read_a_backup_written_by_qubes_test_writer(tmp_path: Path,
                                                       compression: str) -> None:
    result = _run_client("qubes_writer_driver.py", str(tmp_path), compression)
    assert result.returncode == 0, result.stderr
    with (tmp_path / "backup.bin").open("rb") as stream:
        reader = BackupReader(stream, PASS)
        assert reader.header.backup_id == "20161020T123455-1234"
        assert reader.header.compressed == bool(compression)
        assert reader.read_qubes_xml() == (tmp_path / "qubes.xml").read_bytes()
        names = reader.extract(tmp_path / "ours")
    assert "vm3/private.img" in names and "dom0-home/user" in names
    for subdir, source in QUBES_TEST_DIRS.items():
        assert subprocess.run(["diff", "-r", str(tmp_path / "ours" / subdir),
                               str(tmp_path / source)]).returncode == 0, subdir
    assert subprocess.run(["diff", "-r", str(tmp_path / "ours/dom0-home/user"),
                           str(tmp_path / "dom0-home/user")]).returncode == 0
    root, source_root = tmp_path / "ours/vm4/root.img", tmp_path / QUBES_TEST_DIRS["vm4"]
    assert root.stat().st_blocks <= (source_root / "root.img").stat().st_blocks + 64


# Qubes' writer (qubes/backup.py) per file: `tar -Pc --sparse -C DIR
# [--use-compress-program=gzip] --xform=s:^BASE:SUBDIR\0: BASE`, cut into 100 MiB parts
# (here 1 MiB), each `scrypt enc` under "<id>!<part>!<pass>", each sent with
# `tar -cO --posix -C TMPDIR PART.enc`; the header likewise, its .hmac by `scrypt enc`.
QUBES_PIPELINE = r"""
set -euo pipefail
src=$1 out=$2 id=$3 pass=$4
cd "$(mktemp -d)"
tmp=$PWD
enc() { printf '%s' "$1" | scrypt enc -P --logN 10 -r 8 -p 1 "$2" "$3"; }
printf 'version=4\nencrypted=True\ncompressed=True\ncompression-filter=gzip\n' > backup-header
printf 'hmac-algorithm=scrypt\nbackup-id=%s\n' "$id" >> backup-header
enc "backup-header!$pass" backup-header backup-header.hmac
tar -cO --posix -C "$tmp" backup-header > "$out"
tar -cO --posix -C "$tmp" backup-header.hmac >> "$out"
member() {  # DIR BASE SUBDIR
    mkdir -p "./$3"
    tar -Pc --sparse -C "$1" --use-compress-program=gzip --xform="s:^$2:$3\\0:" "$2" |
        split --numeric-suffixes --suffix-length=3 --bytes=1M - "./$3$2."
    for part in $(ls "./$3" | grep -E "^$2\.[0-9]{3}$"); do
        enc "$id!$3$part!$pass" "./$3$part" "./$3$part.enc"
        tar -cO --posix -C "$tmp" "$3$part.enc" >> "$out"
    done
}
member "$src" qubes.xml ""
member "$src/vm" private.img vm5/
member "$src/vm" firewall.xml vm5/
"""


@needs_scrypt
def test_we_read_a_backup_made_by_qubes_writer_pipeline(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "vm").mkdir(parents=True)
    (source / "qubes.xml").write_bytes(b"<qubes/>")
    volume = sparse_file(source / "vm/private.img", 50 << 20,
                         {0: random_bytes(3 << 20), 49 << 20: b"tail"})
    (source / "vm/firewall.xml").write_bytes(b"<firewall/>")
    backup = tmp_path / "backup"
    subprocess.run(["bash", "-c", QUBES_PIPELINE, "qubes", str(source), str(backup),
                    "20240102T030405-7", PASS], check=True, capture_output=True)
    with backup.open("rb") as stream:
        reader = BackupReader(stream, PASS)
        assert reader.read_qubes_xml() == b"<qubes/>"
        chunks = {}
        for member in reader.members():
            member.extract(tmp_path / "ours")
            chunks[member.name] = member.chunks
    assert chunks["vm5/private.img"] >= 3 and chunks["vm5/firewall.xml"] == 1
    restored = tmp_path / "ours/vm5/private.img"
    assert restored.read_bytes() == volume.read_bytes()
    assert restored.stat().st_blocks <= volume.stat().st_blocks + 64
    assert (tmp_path / "ours/vm5/firewall.xml").read_bytes() == b"<firewall/>"


CORE_ADMIN = Path(os.environ.get("SEPTA_QUBES_CORE_ADMIN", "/opt/qubes-core-admin"))
needs_core_admin = pytest.mark.skipif(
    not (CORE_ADMIN / "qubes/backup.py").exists(),
    reason=f"no qubes-core-admin source tree at {CORE_ADMIN} (SEPTA_QUBES_CORE_ADMIN)")


@needs_core_admin
@needs_scrypt
@pytest.mark.parametrize("compressed", [True, False])
def test_we_read_a_backup_written_by_qubes_core_writer(tmp_path: Path,
                                                       compressed: bool) -> None:
    """Qubes' own writer (qubes/backup.py), volumes through its qubes.tarwriter (pax
    sparse 1.0 under a GNUSparseFile name), 1 MiB chunks."""
    (tmp_path / "qubes.xml").write_bytes(b"<qubes/>")
    volume = sparse_file(tmp_path / "volume-export", 40 << 20, {
        0: random_bytes(3 << 20), 30 << 20: b"x" * 5000, (40 << 20) - 4: b"end!"})
    (tmp_path / "firewall.xml").write_bytes(b"<firewall/>")
    backup = tmp_path / "backup"
    result = subprocess.run(
        [sys.executable, str(HERE / "qubes_core_writer_driver.py"), str(CORE_ADMIN),
         str(backup), PASS, str(1 << 20), "1" if compressed else "0",
         str(tmp_path / "qubes.xml"), f"vm5/:private.img:{volume}",
         f"vm5/:firewall.xml:{tmp_path / 'firewall.xml'}"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with backup.open("rb") as stream:
        reader = BackupReader(stream, PASS)
        assert reader.header.backup_id == "20240102T030405-4321"
        assert reader.header.compressed == compressed
        assert reader.read_qubes_xml() == b"<qubes/>"
        chunks = {}
        for member in reader.members():
            member.extract(tmp_path / "ours")
            chunks[member.name] = member.chunks
    assert chunks["vm5/private.img"] >= 3 and chunks["vm5/firewall.xml"] == 1
    restored = tmp_path / "ours/vm5/private.img"
    assert restored.read_bytes() == volume.read_bytes()
    assert restored.stat().st_blocks <= volume.stat().st_blocks + 64
    assert (tmp_path / "ours/vm5/firewall.xml").read_bytes() == b"<firewall/>"
