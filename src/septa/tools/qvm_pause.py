"""qvm-pause: pause qubes (or, with ``--suspend``, put them to S3 sleep).

A failure is reported as ``Error: <message>``; the other qubes are still paused and
the exit code is 1.
"""

from __future__ import annotations

import sys

from septa.client.app import Qubes
from septa.client.errors import QubesException

from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-pause"


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-pause."""
    parser = QubesArgumentParser(
        PROG,
        vmname_nargs="+",
        description="pause a qube",
        epilog="Paused qubes will be killed on system shutdown.",
    )
    parser.add_argument(
        "--suspend",
        "-S",
        action="store_true",
        help="put the qube to (S3) suspend mode instead of emergency pause",
    )
    return parser


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    code = 0
    for vm in parser.domains(app, args):
        try:
            if args.suspend:
                vm.suspend()
            else:
                vm.pause()
        except (QubesException, OSError) as e:
            parser.print_error(e)
            code = 1
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-pause."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
