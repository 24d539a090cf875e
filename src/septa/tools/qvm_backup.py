"""qvm-backup: back up qubes into an encrypted Qubes backup (format 4), as Qubes' tool.

Without ``--profile`` the options make a profile (``/etc/qubes/backup/backup-run-<pid>
.conf``, or the ``--save-profile`` name), as Qubes' qvm-backup does: septad's
``admin.backup.Info`` gives the summary (the size estimate) shown first, then, once
confirmed (``--yes`` skips the question) and the passphrase is given (asked twice, or
read from ``--passphrase-file``, ``-`` for stdin), ``admin.backup.Execute`` writes it
while the ``backup-progress`` events are shown; Ctrl-C cancels it
(``admin.backup.Cancel``). A temporary profile is removed at the end.

The backup location is a directory or a file in dom0, ``-`` for this tool's stdout
(through a private FIFO that septad writes into), or with ``--dest-vm`` what the
qube's ``qubes.Backup`` service takes (a folder or a command there). Backups are always
encrypted: ``--encrypt`` is accepted and ignored, as in Qubes.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TextIO

from septa import paths
from septa.backup import profile as profiles
from septa.client.app import Qubes
from septa.client.errors import QubesException

from .runner import run

PROG = "qvm-backup"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Create a backup of qubes")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    parser.add_argument("--profile", help="perform the backup a given profile defines")
    parser.add_argument("--exclude", "-x", action="append", dest="exclude_list", default=[],
                        help="exclude the qube from the backup (may be repeated)")
    parser.add_argument("--dest-vm", "-d", dest="appvm", default=None,
                        help="the qube the backup is sent to")
    parser.add_argument("--encrypt", "-e", action="store_true", default=True,
                        help="ignored: backups are always encrypted")
    parser.add_argument("--passphrase-file", "-p", default=None,
                        help="read the passphrase from a file, '-' for stdin")
    parser.add_argument("--compress", "-z", action="store_true", dest="compression",
                        default=True, help="compress the backup (default)")
    parser.add_argument("--no-compress", action="store_false", dest="compression",
                        help="do not compress the backup")
    parser.add_argument("--compress-filter", "-Z", dest="compression",
                        help="a compression filter program other than gzip")
    parser.add_argument("--save-profile", help="save the profile under this name")
    parser.add_argument("backup_location", nargs="?", default=None,
                        help="backup location: a directory or file in dom0, '-' for "
                             "stdout, or with --dest-vm a folder or command in that qube")
    parser.add_argument("vms", nargs="*", help="back up only these qubes")
    return parser


def _compression(value: bool | str) -> str | None:
    if value is True:
        return "gzip"
    return value or None


def make_profile(args: argparse.Namespace, name: str, destination: str,
                 passphrase: str | None) -> profiles.Profile:
    dest_vm = args.appvm if args.appvm and args.appvm != "dom0" else "dom0"
    if dest_vm == "dom0" and destination != "-":
        destination = os.path.join(os.getcwd(), destination)
    return profiles.Profile(name, tuple(args.vms) or None, tuple(args.exclude_list), dest_vm,
                            destination, passphrase, None, _compression(args.compression))


def read_passphrase(args: argparse.Namespace) -> str:
    if args.passphrase_file is not None:
        if args.passphrase_file == "-":
            return sys.stdin.readline().rstrip("\n")
        with open(args.passphrase_file, encoding="utf-8") as source:
            return source.readline().rstrip("\n")
    passphrase = getpass.getpass("Please enter the passphrase that will be used to encrypt "
                                 "and verify the backup: ")
    if getpass.getpass("Enter again for verification: ") != passphrase:
        raise QubesException("Passphrase mismatch!")
    return passphrase


def write_profile(path: Path, profile: profiles.Profile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(profiles.dump(profile))


@contextlib.contextmanager
def stdout_fifo() -> Iterator[str]:
    """A FIFO whose data this tool copies to its stdout, in a thread."""
    directory = tempfile.mkdtemp(prefix="qvm-backup-")
    fifo = os.path.join(directory, "backup")
    os.mkfifo(fifo, 0o600)

    def copy() -> None:
        with open(fifo, "rb") as source:
            shutil.copyfileobj(source, sys.stdout.buffer, 1 << 20)
        sys.stdout.buffer.flush()

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    try:
        yield fifo
        with contextlib.suppress(OSError):  # septad never opened it: end the copy
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Progress(threading.Thread):
    """Shows the ``backup-progress`` events of one profile on stderr."""

    def __init__(self, app: Qubes, name: str) -> None:
        super().__init__(daemon=True)
        self.app, self.name = app, name

    def run(self) -> None:
        with contextlib.suppress(QubesException, OSError):
            for event in self.app.events():
                if event.name == "backup-progress" and \
                        event.kwargs.get("backup_profile") == self.name:
                    percent = float(event.kwargs.get("progress", "0"))
                    sys.stderr.write(f"\rMaking a backup... {percent:.02f}%")
                    sys.stderr.flush()


def execute(app: Qubes, name: str) -> int:
    progress = Progress(app, name)
    progress.start()

    def cancel(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(QubesException):
            app.call("dom0", "admin.backup.Cancel", name)

    previous = signal.signal(signal.SIGINT, cancel)
    try:
        app.call("dom0", "admin.backup.Execute", name)
    except QubesException as exc:
        print(f"\nBackup error: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
        print("\n", file=sys.stderr)
    return 0


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    if args.profile is not None:
        return _run_profile(app, args.profile, args.yes)
    if args.backup_location is None:
        parser.error("either --profile or 'backup_location' is required")
    if args.backup_location == "-" and args.appvm not in (None, "dom0"):
        parser.error("'-' (stdout) is a dom0 location: not with --dest-vm")
    name = args.save_profile or f"backup-run-{os.getpid()}"
    path = profiles.profile_path(paths.current().backup_profiles_dir, name)
    with contextlib.ExitStack() as stack:
        destination = args.backup_location
        if destination == "-":
            destination = stack.enter_context(stdout_fifo())
        if not args.save_profile:
            stack.callback(lambda: path.unlink(missing_ok=True))
        write_profile(path, make_profile(args, name, destination, None))
        to_stdout = destination != args.backup_location
        if not _show_summary(app, name, args.yes or to_stdout,
                             sys.stderr if to_stdout else sys.stdout):
            return 0
        write_profile(path, make_profile(args, name, destination, read_passphrase(args)))
        return execute(app, name)
    return 0


def _show_summary(app: Qubes, name: str, yes: bool, out: TextIO = sys.stdout) -> bool:
    summary = app.call("dom0", "admin.backup.Info", name).decode()
    print(summary, file=out)
    if yes:
        return True
    return input("Do you want to proceed? [y/N] ").upper() == "Y"


def _run_profile(app: Qubes, name: str, yes: bool) -> int:
    if not _show_summary(app, name, yes):
        return 0
    return execute(app, name)


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-backup."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
