"""qvm-copy-to-vm (dom0): copy files into a qube, as Qubes' dom0 tool does.

``qvm-copy-to-vm [--without-progress] [--ignore-symlinks] VMNAME FILE [FILE...]``
sends the files with ``qubes.Filecopy`` (``+allow-all-names`` when a name is not safe
to display) through septad's qrexec socket, starting the qube if needed; they arrive in
``~/QubesIncoming/dom0/`` there. The stream is the guest's (:mod:`septa.agent.qfile_pack`
packs it here, the qube's ``qfile_unpack`` unpacks it), so the qube checks every name
and answers with the result; progress (``sent N/M KB``) goes to stderr. Exit status 0
on success, 1 with the reason on stderr otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from septa.agent import qfile
from septa.agent.client_vm import FILTER
from septa.agent.qfile_pack import CopyError, Packer, console_progress
from septa.agent.qfile_scan import scan
from septa.client.errors import QubesException
from septa.client.qrexec import CallRequest, run_call

from .runner import run

PROG = "qvm-copy-to-vm"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="copy files to a qube, into "
                                     "~/QubesIncoming/dom0/")
    parser.add_argument("--without-progress", action="store_false", dest="progress",
                        help="do not show a progress indicator")
    parser.add_argument("--with-progress", action="store_true", dest="progress",
                        default=True, help="show a progress indicator (default)")
    parser.add_argument("--ignore-symlinks", action="store_true",
                        help="do not copy symbolic links")
    parser.add_argument("--no-ignore-symlinks", action="store_false", dest="ignore_symlinks")
    parser.add_argument("VMNAME", help="the destination qube")
    parser.add_argument("files", metavar="FILE", nargs="+", help="file or directory to copy")
    return parser


class FileCall:
    """``qubes.Filecopy`` in a thread: its stdin and stdout are pipes to a packer."""

    def __init__(self, request: CallRequest) -> None:
        self.request = request
        self.data_r, self.data_w = os.pipe()
        self.answer_r, self.answer_w = os.pipe()
        self.status: int | None = None
        self.error: QubesException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _answer(self, data: bytes) -> None:
        try:
            qfile.write_all(self.answer_w, data)
        except OSError:
            pass  # the packer has stopped reading

    def _run(self) -> None:
        def stderr(data: bytes) -> None:
            sys.stderr.buffer.write(data.translate(FILTER))
            sys.stderr.buffer.flush()

        try:
            with os.fdopen(self.data_r, "rb", buffering=0) as stdin:
                self.status = run_call(self.request, stdin=stdin, stdout=self._answer,
                                       stderr=stderr)
        except QubesException as exc:
            self.error = exc
        finally:
            os.close(self.answer_w)

    def wait(self) -> None:
        """Close the packer's ends and wait for the call to end."""
        os.close(self.data_w)
        self.thread.join()
        os.close(self.answer_r)


def copy(vm: str, paths: list[str], progress: bool, ignore_symlinks: bool) -> int:
    """Copy ``paths`` into ``vm``; the exit status."""
    try:
        total, safe = scan(paths, ignore_symlinks)
    except CopyError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    call = FileCall(CallRequest(vm, "qubes.Filecopy", "" if safe else "allow-all-names"))
    packer = Packer(call.data_w, call.answer_r, ignore_symlinks,
                    console_progress(total) if progress else None)
    failure = None
    try:
        for path in paths:
            packer.pack(path)
        packer.finish()
    except CopyError as exc:
        failure = str(exc)
    finally:
        call.wait()
    if call.error is not None:
        raise call.error
    if failure is not None:
        print(failure, file=sys.stderr)
        return 1
    return call.status or 0


def _main(argv: list[str] | None) -> int:
    args = get_parser().parse_args(argv)
    sources = [p[:-1] if p.endswith("/") and p != "/" else p for p in args.files]
    return copy(args.VMNAME, sources, args.progress, args.ignore_symlinks)


def main(argv: list[str] | None = None) -> int:
    return run(PROG, lambda: _main(argv))
