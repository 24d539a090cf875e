"""``qvm-volume list``: the volumes of qubes as a table, one row per (volume, qube).

Columns: ``POOL:VOLUME VMNAME VOLUME_NAME REVERT_POSSIBLE``, sorted by pool and volume
id. When one volume belongs to several qubes, its first row names the last of them;
on a terminal the following rows leave POOL:VOLUME empty unless ``--full``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from septa.client.errors import QubesVMNotFoundError
from septa.client.vm import QubesVM

from .table import print_table

HEADER = ("POOL:VOLUME", "VMNAME", "VOLUME_NAME", "REVERT_POSSIBLE")


@dataclass
class _Entry:
    """One volume (pool + vid) and the (qube, volume name) pairs it appears as."""

    pool: str
    vid: str
    revert_possible: str
    owners: list[tuple[str, str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.pool}:{self.vid}"


def _collect(vms: Iterable[QubesVM], pools: list[str] | None) -> dict[tuple[str, str], _Entry]:
    entries: dict[tuple[str, str], _Entry] = {}
    for vm in vms:
        try:
            volumes = vm.volumes
        except QubesVMNotFoundError:
            continue  # removed meanwhile (a disposable that stopped)
        for name, volume in volumes.items():
            pool = volume.pool
            if pools is not None and pool not in pools:
                continue
            key = (pool, volume.vid)
            entry = entries.get(key)
            if entry is None:
                revert = "Yes" if volume.revisions else "No"
                entry = entries[key] = _Entry(pool, volume.vid, revert)
            entry.owners.append((vm.name, name))
    return entries


def volume_rows(
    vms: Iterable[QubesVM], pools: list[str] | None = None, full: bool = True
) -> list[tuple[str, ...]]:
    """The table (header first) for the volumes of ``vms``, optionally only in ``pools``."""
    rows: list[tuple[str, ...]] = [HEADER]
    entries = _collect(vms, pools)
    for key in sorted(entries):
        entry = entries[key]
        owners = list(entry.owners)
        vmname, volname = owners.pop()
        rows.append((entry.label, vmname, volname, entry.revert_possible))
        for vmname, volname in owners:
            rows.append((entry.label if full else "", vmname, volname, entry.revert_possible))
    return rows


def list_volumes(vms: Iterable[QubesVM], pools: list[str] | None, full: bool) -> None:
    """Print the table; repeated POOL:VOLUME cells are blanked on a terminal unless ``full``."""
    print_table(volume_rows(vms, pools, full or not sys.stdout.isatty()))
