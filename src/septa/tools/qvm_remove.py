"""qvm-remove: remove qubes, after confirmation unless ``--force``."""

from __future__ import annotations

import sys

from septa.client.app import Qubes
from septa.client.dependencies import vm_dependencies
from septa.client.errors import QubesException, QubesVMInUseError
from septa.client.vm import QubesVM

from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-remove"


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-remove."""
    parser = QubesArgumentParser(PROG, vmname_nargs="+", description="Remove qubes.")
    parser.add_argument(
        "--force",
        "-f",
        action="store_true",
        dest="no_confirm",
        default=False,
        help="do not ask for confirmation",
    )
    return parser


def _report_users(app: Qubes, vm: QubesVM) -> None:
    try:
        users = vm_dependencies(app, vm)
    except QubesException:
        return  # the daemon's own message still says why
    if not users:
        return
    print(f"VM {vm.name} cannot be removed. It is in use as:", file=sys.stderr)
    for holder, prop in users:
        if holder is None:
            print(f" - global property {prop}", file=sys.stderr)
        else:
            print(f" - {prop} for {holder.name}", file=sys.stderr)


def _confirmed(
    args_all: bool, no_confirm: bool, exclude: list[str], domains: list[QubesVM]
) -> bool:
    if args_all and not (no_confirm or exclude):
        print(
            "WARNING!!! Removing all domains may leave your system in an unrecoverable state!",
            file=sys.stderr,
        )
        if input("Are you certain? [N/IKNOWWHATIAMDOING]") != "IKNOWWHATIAMDOING":
            return False
    if no_confirm:
        return True
    print("This will completely remove the selected VM(s)...", file=sys.stderr)
    for vm in domains:
        print(" ", vm.name)
    return input("Are you sure? [y/N] ").upper() == "Y"


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    domains = parser.domains(app, args)
    if "dom0" in domains:
        print("Domain 'dom0' cannot be removed.", file=sys.stderr)
        return 1
    try:
        go_ahead = _confirmed(args.all_domains, args.no_confirm, args.exclude, domains)
    except EOFError:
        go_ahead = False
    if not go_ahead:
        print("Remove cancelled.", file=sys.stderr)
        return 1
    for vm in domains:
        try:
            app.domains.remove(vm.name)
        except QubesVMInUseError as e:
            _report_users(app, vm)
            parser.error_runtime(e)
        except QubesException as e:
            parser.error_runtime(e)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-remove."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
