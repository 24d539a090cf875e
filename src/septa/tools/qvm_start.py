"""qvm-start: start qubes.

A qube that is already running is an error (exit 1, nothing more is started) unless
``--skip-if-running``. A start that fails is reported as ``Error: <message>`` and the
remaining qubes are still started; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from septa.client.app import Qubes
from septa.client.errors import QubesException

from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-start"

#: Where a drive image given at start would be attached (not supported yet).
DRIVE_NOT_SUPPORTED = (
    "attaching a drive at start (--drive, --hddisk, --cdrom, --install-windows-tools) "
    "is not supported yet"
)


class _DriveAction(argparse.Action):
    """Stores ``<prefix><image>`` in ``drive`` (``--hddisk`` and ``--cdrom``)."""

    def __init__(self, option_strings: list[str], dest: str, prefix: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, metavar="IMAGE", **kwargs)
        self.prefix = prefix

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, self.prefix + str(values))


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-start."""
    parser = QubesArgumentParser(PROG, vmname_nargs="+", description="start a domain")
    parser.add_argument(
        "--skip-if-running",
        action="store_true",
        default=False,
        help="do not fail if the qube is already running",
    )
    drive = parser.add_mutually_exclusive_group()
    drive.add_argument(
        "--drive",
        metavar="DRIVE",
        help="temporarily attach the drive as CD/DVD or hard disk (prefix hd: or cdrom:, "
        "default cdrom) (not supported yet)",
    )
    drive.add_argument(
        "--hddisk",
        action=_DriveAction,
        dest="drive",
        prefix="hd:",
        help="temporarily attach the drive as hard disk (not supported yet)",
    )
    drive.add_argument(
        "--cdrom",
        action=_DriveAction,
        dest="drive",
        prefix="cdrom:",
        help="temporarily attach the drive as CD/DVD (not supported yet)",
    )
    drive.add_argument(
        "--install-windows-tools",
        action="store_const",
        dest="drive",
        const="cdrom:dom0:/usr/lib/qubes/qubes-windows-tools.iso",
        help="temporarily attach the Windows tools CD-ROM (not supported yet)",
    )
    parser.set_defaults(drive=None)
    return parser


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    domains = parser.domains(app, args)
    if args.drive:
        parser.print_error(DRIVE_NOT_SUPPORTED)
        return 1
    code = 0
    for vm in domains:
        if vm.is_running():
            if args.skip_if_running:
                continue
            parser.print_error(f"domain {vm.name} is already running")
            return 1
        try:
            vm.start()
        except (QubesException, OSError) as e:
            parser.print_error(e)
            code = 1
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-start."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
