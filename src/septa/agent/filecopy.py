"""``qvm-copy``, ``qvm-move``, ``qvm-copy-to-vm`` and ``qvm-move-to-vm`` (in qubes).

As Qubes' script of these names: the name it is run under picks the operation.
``qvm-copy FILE...`` sends the files to the qube the policy (or its ``ask`` prompt)
chooses, target ``@default``; ``qvm-copy-to-vm TARGET FILE...`` names the target (and
says on stderr that qvm-copy saves typing it). The files arrive in
``~/QubesIncoming/<this qube>/`` there. The move variants remove the sources, only once
the receiver has confirmed the whole copy.

The files are checked first (:mod:`septa.agent.qfile_scan`); names that are not safe to
display need ``qubes.Filecopy+allow-all-names``, others go to ``qubes.Filecopy``. The
call is ``qrexec-client-vm`` (:mod:`septa.agent.client_vm`, run in this process) with
the packer (:mod:`septa.agent.qfile_pack`) as its local program. Progress (``sent N/M
KB``) goes to stderr unless ``--without-progress``. The exit status is 0 on success,
126 when the policy refuses the call, 1 (with the reason on stderr) when the copy fails.
"""

from __future__ import annotations

import os
import sys

from . import client_vm
from .qfile_pack import CopyError
from .qfile_scan import scan

HINT = ("In order to avoid typing target qube name twice, use qvm-copy/qvm-move instead "
        "of qvm-copy-to-vm/qvm-move-to-vm.")
OPTIONS = """Options:
    --no-ignore-symlinks   Do not ignore symbolic links (default).
    --ignore-symlinks      Ignore symbolic links.
    --with-progress        Show a progress indicator (default).
    --without-progress     Do not show a progress indicator.
    -h, --help             Show this message and exit.
    --                     Stop searching for options.

    If there is a conflict, later options override earlier options.
"""
PROGRAMS = {"qvm-copy": (False, False), "qvm-move": (True, False),
            "qvm-copy-to-vm": (False, True), "qvm-move-to-vm": (True, True)}


def usage(prog: str, move: bool, to_vm: bool, status: int) -> int:
    """Print the usage (stdout for --help, else stderr); ``status``."""
    target = "destination_qube_name " if to_vm else ""
    verb = "Move" if move else "Copy"
    text = (f"usage: {prog} [--without-progress] [--ignore-symlinks] {target}FILE [FILE ...]\n"
            f"{OPTIONS}\n{verb} FILE to ~/QubesIncoming/[THIS QUBE'S NAME]/ in the "
            "destination qube.\n\nYou will be prompted to select the destination qube. If "
            "FILE is a directory, it will be copied recursively.\n")
    if to_vm:
        text += HINT + "\n"
    (sys.stdout if status == 0 else sys.stderr).write(text)
    return status


def remove(path: str) -> None:
    """``rm -rf PATH``."""
    if os.path.isdir(path) and not os.path.islink(path):
        for entry in os.listdir(path):
            remove(os.path.join(path, entry))
        os.rmdir(path)
    else:
        os.unlink(path)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Entry point; the exit status."""
    prog = prog or os.path.basename(sys.argv[0])
    if prog not in PROGRAMS:
        sys.stderr.write(f"Invoked with unrecognized name {prog}, cannot determine "
                         "operation to perform\n")
        return 1
    move, to_vm = PROGRAMS[prog]
    args = list(sys.argv[1:] if argv is None else argv)
    progress, ignore_symlinks = True, False
    while args:
        arg = args[0]
        if arg in ("--without-progress", "--with-progress"):
            progress = arg == "--with-progress"
        elif arg in ("--ignore-symlinks", "--no-ignore-symlinks"):
            ignore_symlinks = arg == "--ignore-symlinks"
        elif arg in ("-h", "--help"):
            return usage(prog, move, to_vm, 0)
        elif arg == "--":
            args.pop(0)
            break
        elif arg.startswith("-"):
            return usage(prog, move, to_vm, 1)
        else:
            break
        args.pop(0)
    if len(args) < (2 if to_vm else 1):
        return usage(prog, move, to_vm, 1)
    target = "@default"
    if to_vm:
        sys.stderr.write(HINT + "\n")
        target = args.pop(0)
    sources = [path[:-1] if path.endswith("/") and path != "/" else path for path in args]
    try:
        total, safe_names = scan(sources, ignore_symlinks)
    except CopyError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 1
    service = "qubes.Filecopy" if safe_names else "qubes.Filecopy+allow-all-names"
    os.environ["PROGRESS_TYPE"] = "console" if progress else "none"
    os.environ["FILECOPY_TOTAL_BYTES"] = str(total)
    packer_args = ["--ignore-symlinks"] if ignore_symlinks else []
    packer = client_vm.agent_program("qfile_pack", [*packer_args, "--", *sources])
    status = client_vm.main(["--filter-escape-chars-stderr", "--", target, service, *packer])
    if status == 0 and move:
        for path in sources:
            try:
                remove(path)
            except OSError as exc:
                sys.stderr.write(f"{prog}: cannot remove {path}: {exc.strerror}\n")
                status = 1
    return status
