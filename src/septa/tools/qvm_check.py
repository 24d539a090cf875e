"""qvm-check: tell whether qubes exist (or are running, paused, templates, networked).

Exit code 0: all given qubes exist and pass the checks; 1: none passes, or a name does
not exist; 3: some but not all pass. Results are logged as ``qvm-check: NAME: STATUS``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from septa.client.app import Qubes
from septa.client.vm import QubesVM

from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-check"
log = logging.getLogger("qvm-check")

Check = tuple[str, Callable[[QubesVM], bool]]


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-check."""
    parser = QubesArgumentParser(
        PROG,
        vmname_nargs="+",
        description="Exit successfully if the given qube(s) exist, else with failure.",
    )
    parser.add_argument(
        "--running",
        action="store_true",
        default=False,
        help="check whether the qube(s) are running",
    )
    parser.add_argument(
        "--paused", action="store_true", default=False, help="check whether the qube(s) are paused"
    )
    parser.add_argument(
        "--template",
        action="store_true",
        default=False,
        help="check whether the qube(s) are templates",
    )
    parser.add_argument(
        "--networked",
        action="store_true",
        default=False,
        help="check whether the qube(s) can reach the network",
    )
    return parser


def _checks(args: argparse.Namespace) -> list[Check]:
    checks: list[Check] = []
    if args.running:
        checks.append(("running", lambda vm: vm.is_running()))
    if args.paused:
        checks.append(("paused", lambda vm: vm.is_paused()))
    if args.template:
        checks.append(("template", lambda vm: vm.klass == "TemplateVM"))
    if args.networked:
        checks.append(("networked", lambda vm: vm.is_networked()))
    return checks


def _report(domains: set[QubesVM], status: list[str]) -> None:
    if not domains:
        log.info("None of qubes: %s", ", ".join(status))
    for vm in sorted(domains):
        log.info("%s: %s", vm.name, ", ".join(status))


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    missing: list[str] = []
    domains = parser.domains(app, args, missing=missing, wildcards=False)
    code = 0
    checks = _checks(args)
    if checks:
        passing = set(domains)
        for _, check in checks:
            passing &= {vm for vm in domains if check(vm)}
        if passing != set(domains):
            code = 1 if not passing else 3
        _report(passing, [name for name, _ in checks])
    elif not domains:
        code = 1
    else:
        _report(set(domains), ["exists"])
    for name in missing:
        log.warning("%s: non-existent!", name)
    if missing:
        code = 1
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-check."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
