"""qvm-shutdown: ask qubes to shut down; with ``--wait``, wait for them and kill laggards.

``--all`` without ``--exclude`` implies ``--force`` (shut down even qubes others depend
on), as in Qubes. With ``--wait`` the requests are made in rounds: a qube whose request
was refused (say, because a running qube still uses it as netvm) is asked again once the
others have stopped. Qubes still running after ``--timeout`` seconds are killed. The
exit code is the number of qubes that did not shut down.
"""

from __future__ import annotations

import argparse
import logging
import sys

from septa.client.app import Qubes
from septa.client.errors import QubesException, QubesVMNotStartedError
from septa.client.vm import QubesVM
from septa.client.waiting import is_stopped, wait_for_shutdown

from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-shutdown"


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-shutdown."""
    parser = QubesArgumentParser(PROG, vmname_nargs="+", description="Shutdown a qube")
    parser.add_argument(
        "--wait", action="store_true", default=False, help="wait for the VMs to shut down"
    )
    parser.add_argument(
        "--timeout",
        action="store",
        type=float,
        default=60,
        help="timeout after which domains are killed when using --wait (default: %(default)d)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        default=False,
        help="shut down even if other qubes depend on this one (e.g. as NetVM or AudioVM); "
        "does not affect how the qube itself is shut down; use with caution",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        dest="dry_run",
        default=False,
        help="don't really shutdown or kill the domains; useful with --wait",
    )
    return parser


def _request(vms: list[QubesVM], force: bool, errors: dict[QubesVM, str]) -> list[QubesVM]:
    """Ask each qube to shut down; return those that refused (reasons go to ``errors``)."""
    refused = []
    for vm in vms:
        try:
            vm.shutdown(force=force)
        except QubesVMNotStartedError:
            pass
        except QubesException as e:
            errors[vm] = str(e)
            refused.append(vm)
        else:
            errors.pop(vm, None)
    return refused


def _kill(parser: QubesArgumentParser, vms: list[QubesVM]) -> None:
    for vm in vms:
        try:
            vm.kill()
        except QubesVMNotStartedError:
            pass  # it stopped meanwhile
        except QubesException as e:
            parser.error_runtime(e)


def _fail(parser: QubesArgumentParser, failed: list[QubesVM], errors: dict[QubesVM, str]) -> None:
    for vm in failed:
        if vm in errors:
            logging.getLogger(vm.name).error("Shutdown error: %s", errors[vm])
    names = ", ".join(vm.name for vm in failed)
    parser.error_runtime(f"Failed to shut down: {names}", len(failed))


def _shutdown_and_wait(
    parser: QubesArgumentParser, app: Qubes, args: argparse.Namespace, domains: list[QubesVM]
) -> None:
    force = args.force or (args.all_domains and not args.exclude)
    errors: dict[QubesVM, str] = {}
    remaining = list(domains)
    for _ in range(len(domains)):
        if not remaining:
            break
        this_round = remaining
        remaining = [] if args.dry_run else _request(this_round, force, errors)
        asked = [vm for vm in this_round if vm not in remaining]
        if not asked:
            break  # every request was refused: asking again will not help
        left = wait_for_shutdown(app, asked, args.timeout)
        if left and not args.dry_run:
            _kill(parser, left)
    failed = [vm for vm in domains if not is_stopped(vm)]
    if failed:
        _fail(parser, failed, errors)


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    domains = parser.domains(app, args)
    if args.wait:
        _shutdown_and_wait(parser, app, args, domains)
        return 0
    if args.dry_run:
        return 0
    errors: dict[QubesVM, str] = {}
    force = args.force or (args.all_domains and not args.exclude)
    failed = _request(domains, force, errors)
    if failed:
        _fail(parser, failed, errors)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-shutdown."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
