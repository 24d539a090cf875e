"""qvm-volume: list the volumes of qubes, show and change one, resize, revert, import, clear.

Commands (with Qubes' aliases): ``list`` (``ls``, ``l``; the default), ``info`` (``i``),
``config`` (``c``, ``set``, ``s``), ``resize`` (``extend``), ``revert`` (``rv``, ``r``),
``import`` and ``clear``. A volume is named ``VM:VOLUME``. A failed command is
reported as ``Error: <message>`` with exit code 1.
"""

from __future__ import annotations

import argparse
import sys

from septa.client.app import Qubes
from septa.client.errors import QubesException
from septa.client.volumes import Volume

from . import volume_commands as commands
from .parser import QubesArgumentParser
from .runner import run
from .volume_list import list_volumes

PROG = "qvm-volume"


def _add_volume_arg(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("volume", metavar="VM:VOLUME", help="a qube and one of its volumes")


def _add_list(subs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub = subs.add_parser("list", aliases=["ls", "l"], help="list storage volumes")
    sub.add_argument(
        "-p", "--pool", metavar="POOL_NAME", dest="pools", action="append", help="only this pool"
    )
    sub.add_argument(
        "--full",
        action="store_true",
        help="print full line for each POOL_NAME:VOLUME_ID & vm combination",
    )
    group = sub.add_mutually_exclusive_group()
    group.add_argument("--all", action="store_true", dest="all_domains", help="all qubes")
    sub.add_argument("--exclude", action="append", default=[], help="exclude the qube from --all")
    group.add_argument(
        "VMNAME", nargs="*", default=[], help="list volumes from specified domain(s)"
    )


def _add_volume_commands(subs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sub = subs.add_parser("info", aliases=["i"], help="info about volume")
    _add_volume_arg(sub)
    sub.add_argument(
        "property",
        nargs="?",
        help="show only this property instead of all of them; "
        "use 'revisions' to list available revisions",
    )
    sub = subs.add_parser(
        "config", aliases=["c", "set", "s"], help="set config option for a volume"
    )
    _add_volume_arg(sub)
    sub.add_argument("property", help="rw, revisions_to_keep or ephemeral")
    sub.add_argument("value")
    sub = subs.add_parser("resize", aliases=["extend"], help="resize volume for domain")
    _add_volume_arg(sub)
    sub.add_argument("size", help="new size in bytes (or with a unit: 10GiB, 20G...)")
    sub.add_argument(
        "--force",
        "-f",
        action="store_true",
        help="force operation, even if new size is smaller than the current one",
    )
    sub = subs.add_parser("revert", aliases=["rv", "r"], help="revert volume to previous revision")
    _add_volume_arg(sub)
    sub.add_argument(
        "revision",
        metavar="REVISION",
        nargs="?",
        help="optional revision to revert to; if not specified, latest one is assumed",
    )
    sub = subs.add_parser("import", help="import volume data")
    _add_volume_arg(sub)
    sub.add_argument(
        "input_path", metavar="PATH", help="file path to import, use '-' for standard input"
    )
    sub.add_argument("--size", type=int, help="set volume size to this value in bytes")
    sub.add_argument(
        "--no-resize", action="store_true", help="do not resize volume before importing data"
    )
    sub = subs.add_parser("clear", help="clear volume data")
    _add_volume_arg(sub)
    sub.add_argument("--force", "-f", action="store_true", help="do not prompt for confirmation")


_CANONICAL = {
    "ls": "list",
    "l": "list",
    "i": "info",
    "c": "config",
    "set": "config",
    "s": "config",
    "extend": "resize",
    "rv": "revert",
    "r": "revert",
}


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-volume."""
    parser = QubesArgumentParser(PROG, description="Qubes volume management")
    subs = parser.add_subparsers(
        title="commands",
        description="For more information see qvm-volume command -h",
        dest="command",
        parser_class=argparse.ArgumentParser,
    )
    _add_volume_commands(subs)
    _add_list(subs)
    parser.set_defaults(command=None, pools=None, full=False)
    return parser


def _volume(parser: QubesArgumentParser, app: Qubes, spec: str) -> Volume:
    parts = spec.split(":")
    if len(parts) != 2:
        parser.error("expected a vm & volume combination like foo:bar")
    vm_name, volume_name = parts
    if vm_name not in app.domains:
        parser.error_runtime(f"no vm {vm_name!r}")
    volume = app.domains.get_blind(vm_name).volumes.get(volume_name)
    if volume is None:
        parser.error_runtime(f"vm {vm_name!r} has no volume {volume_name!r}")
    return volume


def _list(parser: QubesArgumentParser, app: Qubes, args: argparse.Namespace) -> None:
    if args.pools:
        unknown = [p for p in args.pools if p not in app.pools]
        if unknown:
            parser.error("No such pools: " + ", ".join(unknown))
    if args.all_domains or args.exclude or parser.vm_names(args):
        vms = parser.domains(app, args)
    else:
        vms = app.domains.values()
    list_volumes(vms, args.pools, args.full)


def _dispatch(parser: QubesArgumentParser, app: Qubes, args: argparse.Namespace) -> None:
    command = _CANONICAL.get(args.command, args.command)
    if command in (None, "list"):
        _list(parser, app, args)
        return
    volume = _volume(parser, app, args.volume)
    if command == "info":
        commands.info(volume, args.property)
    elif command == "config":
        commands.config(volume, args.property, args.value)
    elif command == "resize":
        commands.resize(volume, args.size, args.force)
    elif command == "revert":
        commands.revert(volume, args.revision)
    elif command == "import":
        commands.import_data(volume, args.input_path, args.size, args.no_resize)
    elif command == "clear":
        commands.clear(volume, args.force)


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    try:
        _dispatch(parser, app, args)
    except (QubesException, OSError) as e:
        parser.print_error(e)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-volume."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
