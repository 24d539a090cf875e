"""qvm-notes: show, edit, set, append to, import or delete the free-form notes of a qube.

Editing (the default action) opens the notes in ``$VISUAL``, else ``$EDITOR``, else
``vi``, and saves them if the file was written.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile

from septa.client.app import Qubes
from septa.client.errors import QubesException
from septa.client.vm import QubesVM

from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-notes"
log = logging.getLogger()


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-notes."""
    parser = QubesArgumentParser(
        PROG,
        vmname_nargs=1,
        description="Manipulate qube notes",
        epilog="The notes of a qube hold at most 256KB of text.",
    )
    parser.add_argument(
        "--force", "-f", action="store_true", help="do not ask for confirmation; assume yes"
    )
    actions = parser.add_argument_group(
        title="Notes action options", description="--edit is the default action."
    )
    group = actions.add_mutually_exclusive_group()
    group.add_argument(
        "--edit",
        "-e",
        action="store_const",
        dest="action",
        const="edit",
        help="edit the notes in $EDITOR",
    )
    group.add_argument(
        "--print", "-p", action="store_const", dest="action", const="print", help="print the notes"
    )
    group.add_argument(
        "--import",
        "-i",
        dest="filename",
        metavar="FILENAME",
        help="replace the notes with the content of a file",
    )
    group.add_argument(
        "--set", "-s", dest="notes", metavar="'NOTES'", help="replace the notes with the given text"
    )
    group.add_argument(
        "--append",
        dest="append",
        metavar="'NOTES'",
        help="add the given text at the end of the notes, on a new line",
    )
    group.add_argument(
        "--delete",
        "-d",
        action="store_const",
        dest="action",
        const="delete",
        help="delete the notes",
    )
    parser.set_defaults(action="edit")
    return parser


def _edit(vm: QubesVM) -> None:
    fd, path = tempfile.mkstemp(prefix=vm.name + "_qube_", suffix="_notes.txt", text=True)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as temp:
            temp.write(vm.get_notes())
        before = os.path.getmtime(path)
        editor = "${VISUAL:-${EDITOR:-vi}} " + path
        result = subprocess.run(editor, shell=True, check=False)
        if result.returncode != 0:
            raise QubesException("the editor exited with status %s", str(result.returncode))
        if os.path.getmtime(path) != before:
            with open(path, encoding="utf-8") as notes:
                vm.set_notes(notes.read())
    finally:
        os.unlink(path)


def _append(vm: QubesVM, text: str) -> None:
    notes = vm.get_notes()
    if notes.split("\n")[-1]:
        notes += "\n"
    vm.set_notes(notes + text)


def _confirm(force: bool, message: str) -> None:
    if force:
        return
    print(message)
    try:
        answer = input("Are you certain? [y/N]")
    except EOFError:
        answer = ""
    if answer.upper() != "Y":
        raise SystemExit(2)


def _perform(vm: QubesVM, args: argparse.Namespace) -> tuple[str, str | None]:
    """Do the action; return it with the error message if it failed (else None)."""
    try:
        if args.action == "edit":
            _edit(vm)
        elif args.action == "print":
            print(vm.get_notes())
        elif args.action == "set":
            vm.set_notes(args.notes)
        elif args.action == "import":
            with open(args.filename, encoding="utf-8") as notes:
                vm.set_notes(notes.read())
        elif args.action == "append":
            _append(vm, args.append)
        elif args.action == "delete":
            _confirm(args.force, "You are about to delete existing qube notes")
            vm.set_notes("")
    except (QubesException, OSError, UnicodeDecodeError) as e:
        return args.action, str(e)
    return args.action, None


_FAILURE = {
    "edit": "Failed to edit qube notes",
    "print": "Unable to get qube notes",
    "set": "Unable to set qube notes",
    "import": "Unable to import notes file",
    "append": "Unable to append qube notes",
    "delete": "Unable to delete qube notes",
}


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    vm = parser.domains(app, args)[0]
    if args.filename is not None:
        args.action = "import"
    if args.notes is not None:
        args.action = "set"
    if args.append is not None:
        args.action = "append"
    action, error = _perform(vm, args)
    if error is not None:
        log.error("%s: %s", _FAILURE[action], error)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-notes."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
