"""qvm-clone: create a copy of a qube (settings and persistent volumes) under a new name."""

from __future__ import annotations

import sys

from septa.client.app import Qubes
from septa.client.clone import clone_vm
from septa.client.errors import QubesException

from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-clone"


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-clone."""
    parser = QubesArgumentParser(PROG, vmname_nargs=1, description="Clone a qube.")
    parser.add_argument("new_name", metavar="NEWVM", help="name of the new qube")
    parser.add_argument(
        "--class",
        "-C",
        dest="cls",
        default=None,
        help="class of the new qube (default: that of the source)",
    )
    parser.add_argument(
        "--ignore-errors",
        action="store_true",
        default=False,
        help="only log failures to copy settings, and go on",
    )
    pools = parser.add_mutually_exclusive_group()
    pools.add_argument(
        "-P",
        metavar="POOL",
        dest="one_pool",
        default="",
        help="put all volumes of the new qube in this pool",
    )
    pools.add_argument(
        "-p",
        "--pool",
        action="append",
        metavar="VOLUME=POOL",
        help="put one volume of the new qube in this pool (repeatable)",
    )
    return parser


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    src = parser.domains(app, args)[0]
    pools: dict[str, str] = {}
    for spec in args.pool or ():
        volume, sep, pool = spec.partition("=")
        if not sep or "=" in pool or not volume:
            parser.error("Pool argument must be of form: -p volume_name=pool_name")
        pools[volume] = pool
    try:
        clone_vm(
            app,
            src,
            args.new_name,
            args.cls,
            pool=args.one_pool or None,
            pools=pools or None,
            ignore_errors=args.ignore_errors,
        )
    except QubesException as e:
        parser.error_runtime(e)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-clone."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
