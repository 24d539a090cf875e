"""qvm-pool: list, inspect, add, change and remove storage pools; list pool drivers.

Commands (with Qubes' aliases): ``list`` (``l``, ``ls``; the default), ``drivers``
(``d``), ``info`` (``i``), ``add`` (``a``), ``remove`` (``r``, ``rm``) and ``set``
(``s``); driver settings are given as ``-o key=value``. The options of the older
syntax (``-l``, ``-i``, ``-a``, ``-r``, ``-s``, ``--help-drivers``) are understood too
(see :mod:`septa.tools.pool_legacy`). Failures end with ``qvm-pool: error: ...``, exit 1.
"""

from __future__ import annotations

import argparse
import sys

from septa.client.app import Qubes
from septa.client.errors import QubesException

from . import pool_commands as commands
from . import pool_legacy
from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-pool"

_OPTION_HELP = "set option for the driver in opt=value form (can be specified multiple times)"

_CANONICAL = {"d": "drivers", "l": "list", "ls": "list", "i": "info", "a": "add"}
_CANONICAL.update({"r": "remove", "rm": "remove", "s": "set"})


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-pool."""
    parser = QubesArgumentParser(PROG, description="Manages Qubes pools and their options")
    subs = parser.add_subparsers(
        title="commands",
        dest="command",
        description="For more information see qvm-pool <command> -h",
        parser_class=argparse.ArgumentParser,
    )
    subs.add_parser("drivers", aliases=["d"], help="list all drivers with their options")
    subs.add_parser("list", aliases=["l", "ls"], help="list all available pools")
    sub = subs.add_parser("info", aliases=["i"], help="print info about the specified pools")
    sub.add_argument("pool_names", metavar="POOL_NAME", nargs="+")
    sub = subs.add_parser("add", aliases=["a"], help="add a new pool")
    sub.add_argument("pool_name", metavar="POOL_NAME")
    sub.add_argument("driver", metavar="DRIVER")
    sub.add_argument("--option", "-o", action="append", default=[], help=_OPTION_HELP)
    sub = subs.add_parser("remove", aliases=["r", "rm"], help="remove the specified pools")
    sub.add_argument("pool_names", metavar="POOL_NAME", nargs="+")
    sub = subs.add_parser("set", aliases=["s"], help="modify driver options for a pool")
    sub.add_argument("pool_name", metavar="POOL_NAME")
    sub.add_argument("--option", "-o", action="append", default=[], help=_OPTION_HELP)
    parser.set_defaults(command=None)
    return parser


def _options(parser: QubesArgumentParser, tokens: list[str]) -> dict[str, str]:
    try:
        return commands.parse_options(tokens)
    except ValueError as e:
        parser.error(str(e))


def _dispatch(parser: QubesArgumentParser, app: Qubes, args: argparse.Namespace) -> None:
    command = _CANONICAL.get(args.command, args.command)
    if command in (None, "list"):
        commands.list_pools(app)
    elif command == "drivers":
        commands.list_drivers(app)
    elif command == "info":
        unknown = [name for name in args.pool_names if name not in app.pools]
        if unknown:
            parser.error("No such pools: " + ", ".join(unknown))
        commands.info_pools(app.pools[name] for name in args.pool_names)
    elif command == "add":
        options = _options(parser, args.option)
        commands.add_pool(app, args.pool_name, args.driver, options)
    elif command == "remove":
        errors = commands.remove_pools(app, args.pool_names)
        if errors:
            parser.error_runtime("\n".join(errors))
    elif command == "set":
        options = _options(parser, args.option)
        if args.pool_name not in app.pools:
            parser.error_runtime(f"No such pool {args.pool_name}")
        errors = commands.set_pool(app.pools[args.pool_name], options)
        if errors:
            parser.error_runtime("\n".join(errors))


def _main(argv: list[str] | None) -> int:
    if pool_legacy.uses_legacy_options(sys.argv[1:] if argv is None else argv):
        return pool_legacy.main(argv)
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    try:
        _dispatch(parser, app, args)
    except QubesException as e:
        parser.error_runtime(e)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-pool."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
