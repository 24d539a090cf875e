"""A backup we wrote, restored by hand with only ``tar``, the ``scrypt`` command-line
tool and ``gzip``, following Qubes' "Emergency backup recovery (v4)" steps."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from septa.backup import BackupWriter, atomic_output
from tests.backup.helpers import FAST, needs_scrypt, random_bytes, sparse_file

PASS = "a 'quoted' pass $phrase!"
QUBES_XML = b"<qubes><domain><feature name='backup-path'>vm7/</feature></domain></qubes>\n"

# The documented steps, word for word where they are commands; $1 the backup file,
# $2 the qube's backup-path, $3 the decompression command (empty when not compressed).
STEPS = r"""
set -euo pipefail
backup=$1 dir=$2 decompress=$3
read -r backup_pass
tar -i -xvf "$backup" backup-header backup-header.hmac qubes.xml.000.enc
echo "backup-header!$backup_pass" |\
    scrypt dec -P backup-header.hmac backup-header.verified && \
    diff -qs backup-header backup-header.verified
backup_id=$(sed -n 's/^backup-id=//p' backup-header)
echo "$backup_id!qubes.xml.000!$backup_pass" |\
    scrypt dec -P qubes.xml.000.enc | $decompress | tar -xv
tar -i -xvf "$backup" "$dir"
find "$dir" -name 'private.img.*.enc' | sort -V | while read f_enc; do \
    f_dec=${f_enc%.enc}; \
    echo "$backup_id!$f_dec!$backup_pass" | scrypt dec -P $f_enc || break; \
    done | $decompress | tar -xv
"""


@needs_scrypt
@pytest.mark.parametrize("compression", ["gzip", None])
def test_emergency_restore_by_hand(tmp_path: Path, compression: str | None) -> None:
    volume = sparse_file(tmp_path / "volume", 64 << 20, {
        4096: random_bytes(3 << 20), 60 << 20: b"the end of the private volume"})
    backup = tmp_path / "qubes-backup-2024-01-02T030405"
    with atomic_output(backup) as out, BackupWriter(out, PASS, params=FAST,
                                                    compression_filter=compression,
                                                    chunk_size=1 << 20) as writer:
        writer.add_bytes("qubes.xml", QUBES_XML)
        writer.add_file("vm7/private.img", volume)
        writer.add_bytes("vm7/firewall.xml", b"<firewall/>")
    restore = tmp_path / "restore"
    restore.mkdir()
    result = subprocess.run(["bash", "-c", STEPS, "steps", str(backup), "vm7/",
                             "gzip -d" if compression else "cat"],
                            input=PASS + "\n", cwd=restore, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Files backup-header and backup-header.verified are identical" in result.stdout
    assert (restore / "qubes.xml").read_bytes() == QUBES_XML
    assert len(list((restore / "vm7").glob("private.img.*.enc"))) > 2
    restored = restore / "vm7/private.img"
    assert subprocess.run(["cmp", str(volume), str(restored)]).returncode == 0
    assert restored.stat().st_blocks <= volume.stat().st_blocks + 64


@needs_scrypt
def test_the_hand_procedure_stops_on_a_changed_chunk(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    with atomic_output(backup) as out, BackupWriter(out, PASS, params=FAST,
                                                    chunk_size=1 << 20) as writer:
        writer.add_bytes("qubes.xml", QUBES_XML)
        writer.add_bytes("vm7/private.img", random_bytes(3 << 20))
    data = bytearray(backup.read_bytes())
    data[-20000] ^= 1
    backup.write_bytes(bytes(data))
    (tmp_path / "restore").mkdir()
    result = subprocess.run(["bash", "-c", STEPS, "steps", str(backup), "vm7/", "gzip -d"],
                            input=PASS + "\n", cwd=tmp_path / "restore", capture_output=True,
                            text=True)
    assert result.returncode != 0
