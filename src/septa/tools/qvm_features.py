"""qvm-features: list, show, set or unset the features of a qube.

Showing a feature that is not set prints nothing and exits 1.
"""

from __future__ import annotations

import sys

from septa.client.app import Qubes
from septa.client.errors import QubesException, QubesFeatureNotFoundError

from .parser import QubesArgumentParser
from .runner import run
from .table import print_table

PROG = "qvm-features"


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-features."""
    parser = QubesArgumentParser(PROG, vmname_nargs=1, description="manage a qube's features")
    parser.add_argument("feature", metavar="FEATURE", nargs="?", help="name of the feature")
    parser.add_argument("value", metavar="VALUE", nargs="?", help="new value of the feature")
    parser.add_argument(
        "--unset",
        "--default",
        "--delete",
        "-D",
        dest="delete",
        action="store_true",
        help="unset the feature",
    )
    return parser


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    vm = parser.domains(app, args)[0]
    try:
        if args.feature is None:
            if args.delete:
                parser.error("--unset requires a feature")
            print_table(vm.features.items())
        elif args.delete:
            if args.value is not None:
                parser.error("cannot both set and unset a value")
            try:
                del vm.features[args.feature]
            except QubesFeatureNotFoundError:
                pass
        elif args.value is None:
            try:
                print(vm.features[args.feature])
            except QubesFeatureNotFoundError:
                return 1
        else:
            vm.features[args.feature] = args.value
    except QubesException as e:
        parser.error_runtime(e)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-features."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
