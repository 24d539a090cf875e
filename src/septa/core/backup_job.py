"""Running one backup of a profile: the chosen qubes' registry copy and files, encrypted
(:mod:`septa.backup.writer`) into the profile's destination, with progress and cancel.

Destinations, as in Qubes: with ``destination_vm`` dom0, ``destination_path`` is a
directory (the backup is a new file ``qubes-backup-<date>`` in it), a file path (made
only once the backup is complete), or an existing FIFO or character device (written
as it is, e.g. the pipe ``qvm-backup -`` reads from). With a qube, the backup is the
stdin of its ``qubes.Backup`` service, whose first line is ``destination_path``; it is
streamed, never staged whole in dom0. The passphrase is the profile's
``passphrase_text``, or what ``qubes.BackupPassphrase+<profile>`` prints in
``passphrase_vm``. The key derivation costs scrypt's N = 2^20 per chunk (about 1 GiB
and seconds each); ``SEPTA_BACKUP_SCRYPT_LOG_N`` (14..20) lowers it for tests and small
machines, as the ``scrypt`` tool itself picks N by the machine's speed.

The registry copy is made on the event loop; the writing runs in a thread. Progress
(whole percents) and the end come back to the loop. Cancelling the coroutine stops the
writer at its next block and waits for it, so a cancelled backup to a path leaves no
file; a qube destination's service sees its stdin end early and the call aborted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from septa.backup.atomic import atomic_output
from septa.backup.errors import BackupError
from septa.backup.profile import Profile
from septa.backup.scrypt_file import DEFAULT_PARAMS, ScryptParams
from septa.backup.writer import BackupWriter
from septa.core.backup_content import QubeContent, qube_content, registry_xml, select_qubes
from septa.core.errors import BackupCancelledError, QubesException

if TYPE_CHECKING:
    from septa.core.app import Qubes
    from septa.qrexec.mux import RemoteCall

log = logging.getLogger(__name__)
PASSPHRASE_LIMIT = 4096
LOG_N_VARIABLE = "SEPTA_BACKUP_SCRYPT_LOG_N"


def scrypt_params() -> ScryptParams:
    """The key derivation cost (see the module docstring)."""
    text = os.environ.get(LOG_N_VARIABLE)
    if not text:
        return DEFAULT_PARAMS
    if not text.isdigit() or not 14 <= int(text) <= DEFAULT_PARAMS.log_n:
        raise QubesException(f"{LOG_N_VARIABLE} must be 14..{DEFAULT_PARAMS.log_n}: {text!r}")
    return ScryptParams(int(text), DEFAULT_PARAMS.r, DEFAULT_PARAMS.p)


@dataclass
class BackupPlan:
    """What one run of a profile writes."""

    profile: Profile
    contents: list[QubeContent]

    @property
    def total(self) -> int:
        return sum(c.size for c in self.contents)


def plan(app: Qubes, profile: Profile) -> BackupPlan:
    qubes = select_qubes(app, profile.include, profile.exclude)
    if profile.destination_vm != "dom0" and profile.destination_vm not in app.domains:
        raise QubesException("Invalid destination_vm specified in backup profile")
    return BackupPlan(profile, [qube_content(vm) for vm in qubes])


class _Cancelled(Exception):
    pass


class _Progress:
    """The writer's progress callback (its thread): whole percents to the loop; raises
    once the backup is cancelled, which stops the writer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, report: Callable[[int], None]) -> None:
        self.loop = loop
        self.report = report
        self.cancelled = threading.Event()
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if self.cancelled.is_set():
            raise _Cancelled
        percent = min(100, done * 100 // total) if total else 0
        if percent != self.last:
            self.last = percent
            self.loop.call_soon_threadsafe(self.report, percent)


class _CallWriter:
    """A binary file whose writes go into a running qrexec call (from the writer's thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, call: RemoteCall,
                 progress: _Progress) -> None:
        self.loop, self.call, self.progress = loop, call, progress

    def write(self, data: bytes) -> int:
        if self.progress.cancelled.is_set():
            raise _Cancelled
        asyncio.run_coroutine_threadsafe(self.call.write(bytes(data)), self.loop).result()
        return len(data)

    def flush(self) -> None:
        pass


def backup_file_name() -> str:
    return time.strftime("qubes-backup-%Y-%m-%dT%H%M%S")


@contextmanager
def _dom0_output(path_text: str) -> Iterator[BinaryIO]:
    path = Path(path_text)
    if not path.is_absolute():
        raise QubesException(f"The backup destination must be an absolute path: {path_text}")
    if path.is_dir():
        path = path / backup_file_name()
    kind = path.stat().st_mode if path.exists() else 0
    if stat.S_ISFIFO(kind) or stat.S_ISCHR(kind):
        with open(path, "wb") as out:
            yield out
        return
    if not path.parent.is_dir():
        raise QubesException(f"The backup destination's folder does not exist: {path.parent}")
    with atomic_output(path) as out:
        yield out


def _write(plan_: BackupPlan, registry: bytes, out: BinaryIO, passphrase: str,
           progress: _Progress) -> None:
    compression = plan_.profile.compression
    with BackupWriter(out, passphrase, compression_filter=compression, progress=progress,
                      total_estimate=plan_.total, params=scrypt_params()) as writer:
        writer.add_bytes("qubes.xml", registry)
        for content in plan_.contents:
            if not content.files:
                writer.add_bytes(f"{content.subdir}empty", b"")
            for item in content.files:
                path = item.open_path()
                try:
                    writer.add_file(f"{content.subdir}{item.name}", Path(path),
                                    estimate=item.size)
                finally:
                    item.close_path(path)


async def passphrase_of(app: Qubes, profile: Profile) -> str:
    """The profile's passphrase (from its ``passphrase_vm`` when it names one)."""
    if profile.passphrase_text is not None:
        return profile.passphrase_text
    if profile.passphrase_vm is None:
        raise QubesException("Invalid backup profile - you need to specify passphrase_text "
                             "or passphrase_vm")
    if profile.passphrase_vm not in app.domains or app.runtime is None:
        raise QubesException("Invalid backup profile - invalid passphrase_vm")
    mux = await app.runtime.running_mux(app.domains[profile.passphrase_vm], True)
    status, out, _ = await mux.run({
        "service": "qubes.BackupPassphrase", "arg": profile.name, "source": "dom0",
        "user": "user", "requested_target": profile.passphrase_vm})
    text = out[:PASSPHRASE_LIMIT].decode("utf-8", errors="replace").strip()
    if status != 0 or not text or "\n" in text:
        raise QubesException(f"Failed to retrieve passphrase from '{profile.passphrase_vm}' VM")
    return text


async def run_backup(app: Qubes, profile: Profile, report: Callable[[int], None]) -> None:
    """Write the backup of ``profile``; ``report`` gets whole percents (on the loop)."""
    plan_ = plan(app, profile)
    passphrase = await passphrase_of(app, profile)
    registry = registry_xml(app, plan_.contents)
    loop = asyncio.get_running_loop()
    progress = _Progress(loop, report)
    call: RemoteCall | None = None
    if profile.destination_vm != "dom0":
        if app.runtime is None:
            raise QubesException("This septad runs no qubes: no backup to a qube")
        mux = await app.runtime.running_mux(app.domains[profile.destination_vm], True)
        call = await mux.open({"service": "qubes.Backup", "arg": "", "source": "dom0",
                               "user": "user", "requested_target": profile.destination_vm})
        await call.write(profile.destination_path.replace("\n", "").encode() + b"\n")

    def work() -> None:
        if call is not None:
            _write(plan_, registry, _CallWriter(loop, call, progress),  # type: ignore[arg-type]
                   passphrase, progress)
        else:
            with _dom0_output(profile.destination_path) as out:
                _write(plan_, registry, out, passphrase, progress)

    job = loop.run_in_executor(None, work)
    try:
        await asyncio.shield(job)
        if call is not None:
            await call.close_stdin()
            status = await call.wait()
            if status != 0:
                err = (await call.read_stderr())[-400:].decode(errors="replace").strip()
                raise QubesException(f"The backup qube's qubes.Backup failed (exit status "
                                     f"{status}): {err}")
    except asyncio.CancelledError:
        progress.cancelled.set()
        await asyncio.gather(job, return_exceptions=True)
        if call is not None:
            call.abort()
        raise BackupCancelledError("Backup cancelled") from None
    except (BackupError, OSError, ValueError) as exc:
        if call is not None:
            call.abort()
        raise QubesException(f"Backup failed: {exc}") from exc
    log.info("backup %s: %d qubes, %d bytes estimated", profile.name, len(plan_.contents),
             plan_.total)
