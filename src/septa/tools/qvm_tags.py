"""qvm-tags: list, query, add or remove the tags of a qube.

``qvm-tags VM`` and ``qvm-tags VM list`` list the tags; ``list TAG`` prints TAG and
exits 0 if it is set, else exits 1; ``add TAG...`` and ``del TAG`` change them.
"""

from __future__ import annotations

import argparse
import sys

from septa.client.app import Qubes
from septa.client.errors import QubesException
from septa.client.vm import QubesVM

from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-tags"


def _query(vm: QubesVM, args: argparse.Namespace) -> int:
    tag = getattr(args, "tag", None)
    if tag is None:
        tags = sorted(vm.tags)
        if tags:
            print("\n".join(tags))
        return 0
    if tag not in vm.tags:
        return 1
    print(tag)
    return 0


def _add(vm: QubesVM, args: argparse.Namespace) -> int:
    for tag in args.tag:
        vm.tags.add(tag)
    return 0


def _delete(vm: QubesVM, args: argparse.Namespace) -> int:
    for tag in args.tag:
        vm.tags.discard(tag)
    return 0


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-tags."""
    parser = QubesArgumentParser(PROG, vmname_nargs=1, description="manage a qube's tags")
    commands = parser.add_subparsers(
        title="commands", description="see qvm-tags VMNAME COMMAND -h", dest="command"
    )
    query = commands.add_parser("list", aliases=["ls", "l"], help="list the tags, or query one")
    query.add_argument("tag", nargs="?", default=None)
    query.set_defaults(func=_query)
    add = commands.add_parser("add", aliases=["a", "set"], help="add tags")
    add.add_argument("tag", nargs="+")
    add.set_defaults(func=_add)
    delete = commands.add_parser("del", aliases=["d", "unset", "u"], help="remove a tag")
    delete.add_argument("tag", nargs=1)
    delete.set_defaults(func=_delete)
    parser.set_defaults(func=_query)
    return parser


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    vm = parser.domains(app, args)[0]
    try:
        result: int = args.func(vm, args)
    except QubesException as e:
        parser.error_runtime(e)
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-tags."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
