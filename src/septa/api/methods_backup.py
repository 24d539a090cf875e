"""``admin.backup.Info``, ``Execute`` and ``Cancel``: backups of the profiles in
``/etc/qubes/backup/<profile>.conf`` (:mod:`septa.backup.profile`), as in Qubes.

``Info`` answers the summary table (the qubes, their sizes, the total, the qubes left
out) without the passphrase; ``Execute`` writes the backup (:mod:`septa.core.backup_job`)
and answers when it is complete, firing ``backup-progress`` (``backup_profile``,
``progress`` in percent) on dom0 meanwhile; ``Cancel`` stops a running ``Execute``,
which then answers ``BackupCancelledError``. One backup per profile runs at a time.
"""

from __future__ import annotations

import asyncio

from septa.api.dispatch import Call, method
from septa.backup import profile
from septa.core.backup_content import summary
from septa.core.backup_job import plan, run_backup
from septa.core.errors import BackupAlreadyRunningError, ProtocolError, QubesException

#: the Execute tasks running, by profile name
RUNNING: dict[str, asyncio.Task[None]] = {}


def _profile(call: Call) -> profile.Profile:
    if "/" in call.arg:
        raise ProtocolError("Backup profile ID must not contain forward slash character")
    return profile.load(call.app.paths.backup_profiles_dir, call.arg)


@method("admin.backup.Info", wants_arg=True, dest_adminvm=True)
async def backup_info(call: Call) -> str:
    chosen = plan(call.app, _profile(call))
    return summary(call.app, chosen.contents)


@method("admin.backup.Execute", wants_arg=True, dest_adminvm=True)
async def backup_execute(call: Call) -> str:
    loaded = _profile(call)
    if loaded.name in RUNNING:
        raise BackupAlreadyRunningError(f"A backup of profile {loaded.name} is running")
    app = call.app

    def report(percent: int) -> None:
        app.fire_event("backup-progress", backup_profile=loaded.name, progress=percent)

    task = asyncio.ensure_future(run_backup(app, loaded, report))
    RUNNING[loaded.name] = task
    try:
        await task
    finally:
        RUNNING.pop(loaded.name, None)
    return ""


@method("admin.backup.Cancel", wants_arg=True, dest_adminvm=True)
async def backup_cancel(call: Call) -> str:
    if "/" in call.arg:
        raise ProtocolError("Backup profile ID must not contain forward slash character")
    task = RUNNING.get(call.arg)
    if task is None:
        raise QubesException("Backup operation not running")
    task.cancel()
    return ""
