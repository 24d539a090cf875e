"""The older option syntax of qvm-pool, still accepted by Qubes 4.3.

``-l`` lists pools, ``-i POOL`` shows one (repeatable), ``-a NAME DRIVER`` adds one,
``-r NAME`` removes one, ``-s POOL`` changes one and ``--help-drivers`` lists drivers;
driver settings are given as ``-o key=value,key=value``. Failures are usage errors
(exit 2), as in Qubes.
"""

from __future__ import annotations

import argparse

from septa.client.app import Qubes
from septa.client.errors import QubesException

from . import pool_commands as commands
from .parser import QubesArgumentParser

PROG = "qvm-pool"

_LEGACY_FLAGS = ("-a", "--add", "-i", "--info", "-l", "--list", "-r", "--remove", "-s", "--set")


def uses_legacy_options(argv: list[str]) -> bool:
    """Whether the command line uses the older syntax (as Qubes decides it)."""
    probe = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in (*_LEGACY_FLAGS, "--help-drivers"):
        probe.add_argument(flag, dest="legacy", action="store_true")
    try:
        found, _ = probe.parse_known_args(argv)
    except SystemExit:
        return False
    return bool(found.legacy)


def get_parser() -> QubesArgumentParser:
    """The older command line of qvm-pool."""
    parser = QubesArgumentParser(PROG, description="Manages Qubes pools and their options")
    parser.add_argument(
        "-o", dest="options", metavar="options", help="comma-separated list of driver options"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-l",
        "--list",
        dest="command",
        action="store_const",
        const="list",
        help="list all pools and exit (default action)",
    )
    group.add_argument(
        "-i", "--info", metavar="POOLNAME", dest="info", action="append", help="print pool info"
    )
    group.add_argument("-a", "--add", nargs=2, metavar=("NAME", "DRIVER"), help="add pool")
    group.add_argument("-r", "--remove", metavar="NAME", help="remove pool")
    group.add_argument(
        "-s", "--set", metavar="POOLNAME", help="modify pool (use -o to specify modifications)"
    )
    group.add_argument(
        "--help-drivers",
        dest="command",
        action="store_const",
        const="list-drivers",
        help="list all drivers with their options and exit",
    )
    return parser


def _options(parser: QubesArgumentParser, text: str | None) -> dict[str, str]:
    try:
        return commands.parse_options(text.split(",") if text else [])
    except ValueError as e:
        parser.error(str(e))


def _run(parser: QubesArgumentParser, app: Qubes, args: argparse.Namespace) -> None:
    if args.add:
        name, driver = args.add
        try:
            commands.add_pool(app, name, driver, _options(parser, args.options))
        except QubesException as e:
            parser.error(str(e))
    elif args.remove:
        errors = commands.remove_pools(app, [args.remove])
        if errors:
            parser.error(errors[0])
    elif args.info:
        unknown = [name for name in args.info if name not in app.pools]
        if unknown:
            parser.error("No such pools: " + ", ".join(unknown))
        commands.info_pools(app.pools[name] for name in args.info)
    elif args.set:
        if args.set not in app.pools:
            parser.error(f"No such pools: {args.set}")
        errors = commands.set_pool(app.pools[args.set], _options(parser, args.options))
        if errors:
            parser.error(errors[0])
    elif args.command == "list-drivers":
        commands.list_drivers(app)
    else:
        commands.list_pools(app)


def main(argv: list[str] | None) -> int:
    """Run the older syntax; errors end the program through the parser."""
    parser = get_parser()
    args = parser.parse_args(argv)
    _run(parser, Qubes(), args)
    return 0
