"""Where ``qvm-backup-restore`` reads a backup from: a file in dom0 (``-``: stdin), or a
qube, whose ``qubes.Restore`` service prints the backup on its stdout.

For a qube, the service gets two lines on its stdin, as in Qubes: the location (a
file there, or a command that prints the backup) and the members wanted (empty: all).
Its stdout is copied into a pipe by a thread (the qrexec call's flow control holds the
qube back while the pipe is full), so the backup streams through and is never copied
whole anywhere. Closing the source early breaks the pipe, which ends the call.
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from pathlib import Path
from typing import BinaryIO

from septa.client.errors import QubesException
from septa.client.qrexec import CallRequest, run_call

PIPE_BUFFER = 1 << 20
STDERR_TAIL = 2000


class BackupSource:
    """An open backup stream; :attr:`total` is its size when known."""

    def __init__(self, stream: BinaryIO, total: int | None, description: str) -> None:
        self.stream = stream
        self.total = total
        self.description = description

    def finish(self) -> None:
        """Check, once the stream was read to its end, that its producer succeeded."""

    def failure(self) -> str | None:
        """After :meth:`close`: why the producer failed, if it did (the cause of a
        stream that ended early)."""
        return None

    def close(self) -> None:
        """Release the stream (and stop its producer)."""
        self.stream.close()


def open_file(location: str) -> BackupSource:
    """The backup in dom0 file *location* (``-`` for stdin)."""
    if location == "-":
        return BackupSource(os.fdopen(os.dup(sys.stdin.fileno()), "rb"), None, "stdin")
    path = Path(location)
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise QubesException(f"cannot open the backup {location}: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise QubesException(f"{location} is a directory: name the backup file in it "
                             f"(qubes-backup-...)")
    try:
        stream = path.open("rb")
    except OSError as err:
        raise QubesException(f"cannot open the backup {location}: {err.strerror}") from None
    total = path.stat().st_size if stat.S_ISREG(mode) else None
    return BackupSource(stream, total, str(path))


class QubeSource(BackupSource):
    """The backup *location* printed by ``qubes.Restore`` in *qube*."""

    def __init__(self, qube: str, location: str) -> None:
        read_fd, write_fd = os.pipe()
        super().__init__(os.fdopen(read_fd, "rb", buffering=PIPE_BUFFER), None,
                         f"{location} in {qube}")
        self.qube = qube
        self._out = write_fd
        self._stderr = b""
        self._status: int | None = None
        self._error: BaseException | None = None
        prefix = location.replace("\r", "").replace("\n", "").encode() + b"\n\n"
        request = CallRequest(qube, "qubes.Restore")
        self._thread = threading.Thread(target=self._run, args=(request, prefix),
                                        name="qubes.Restore", daemon=True)
        self._thread.start()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._out, view):]

    def _keep_stderr(self, data: bytes) -> None:
        self._stderr = (self._stderr + data)[-STDERR_TAIL:]

    def _run(self, request: CallRequest, prefix: bytes) -> None:
        try:
            self._status = run_call(request, prefix=prefix, stdout=self._write,
                                    stderr=self._keep_stderr)
        except BaseException as err:  # noqa: BLE001 - reported by finish()
            self._error = err
        finally:
            os.close(self._out)

    def finish(self) -> None:
        self._thread.join()
        problem = self.failure()
        if problem is not None:
            raise QubesException(problem)

    def failure(self) -> str | None:
        if self._thread.is_alive() or isinstance(self._error, BrokenPipeError):
            return None
        if self._error is not None:
            return f"reading the backup from {self.qube} failed: {self._error}"
        if self._status != 0:
            message = self._stderr.decode("utf-8", "replace").strip()
            return (f"qubes.Restore in {self.qube} failed (exit status {self._status})"
                    + (f": {message}" if message else ""))
        return None

    def close(self) -> None:
        self.stream.close()
        self._thread.join(timeout=10)


def open_source(location: str, qube: str | None) -> BackupSource:
    """The backup at *location*, in dom0 or in *qube*."""
    if qube is None or qube == "dom0":
        return open_file(location)
    return QubeSource(qube, location)
