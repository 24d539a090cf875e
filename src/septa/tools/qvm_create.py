"""qvm-create: create a new qube.

Exit codes as in Qubes: 0 created, 1 not created, 2 usage error or created but a
``--property`` could not be set, 3 created but the root image could not be imported.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from septa.client.app import Qubes
from septa.client.clone import clone_vm
from septa.client.errors import QubesException, QubesLabelNotFoundError
from septa.client.vm import QubesVM

from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-create"
log = logging.getLogger("app")


class _PropertyAction(argparse.Action):
    """``--property NAME=VALUE``: collect into ``namespace.properties``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        name, sep, value = str(values).partition("=")
        if not sep:
            parser.error(f"invalid property token: {values!r}")
        namespace.properties = {**namespace.properties, name: value}


class _SinglePropertyAction(argparse.Action):
    """An option or argument that sets one property (``--label``, ``--template``, VMNAME)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        self.property_name = dest
        kwargs.setdefault("metavar", "VALUE")
        super().__init__(option_strings, "properties", **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if not isinstance(values, str):
            return  # an absent optional argument (argparse passes the default)
        namespace.properties = {**namespace.properties, self.property_name: values}


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-create."""
    parser = QubesArgumentParser(PROG, description="Create a new qube.")
    parser.add_argument(
        "--class",
        "-C",
        dest="cls",
        default="AppVM",
        help="class of the new qube (default: %(default)s)",
    )
    parser.add_argument("--standalone", action="store_true", help="same as --class StandaloneVM")
    parser.add_argument("--disp", action="store_true", help="same as --class DispVM --label red")
    parser.add_argument(
        "--property",
        "--prop",
        action=_PropertyAction,
        metavar="NAME=VALUE",
        help="set a property of the new qube (repeatable)",
    )
    parser.add_argument(
        "--pool",
        "-p",
        action="append",
        metavar="VOLUME_NAME=POOL_NAME",
        help="put one volume in the given pool (repeatable)",
    )
    parser.add_argument(
        "-P",
        metavar="POOL_NAME",
        dest="one_pool",
        default="",
        help="put all volumes in the given pool",
    )
    parser.add_argument(
        "--template", "-t", action=_SinglePropertyAction, help="the template to base the qube on"
    )
    parser.add_argument(
        "--label",
        "-l",
        action=_SinglePropertyAction,
        help="the label (colour) of the qube, e.g. red, green, blue",
    )
    parser.add_argument(
        "--help-classes", action="store_true", help="list the classes of qubes and exit"
    )
    root = parser.add_mutually_exclusive_group()
    root.add_argument(
        "--root-copy-from",
        "-r",
        metavar="FILENAME",
        help="use a copy of this image as the root volume",
    )
    root.add_argument(
        "--root-move-from",
        "-R",
        metavar="FILENAME",
        help="use this image as the root volume, moving it",
    )
    root.add_argument("--no-root", action="store_true", default=False, help=argparse.SUPPRESS)
    parser.add_argument(
        "name",
        metavar="VMNAME",
        action=_SinglePropertyAction,
        nargs="?",
        help="name of the new qube",
    )
    parser.set_defaults(properties={})
    return parser


def _pools(parser: QubesArgumentParser, specs: list[str] | None) -> dict[str, str]:
    pools: dict[str, str] = {}
    for spec in specs or ():
        volume, sep, pool = spec.partition("=")
        if not sep or "=" in pool or not volume:
            parser.error("Pool argument must be of form: -p volume_name=pool_name")
        pools[volume] = pool
    return pools


def _create(
    app: Qubes, args: argparse.Namespace, props: dict[str, str], pools: dict[str, str]
) -> QubesVM:
    pool = args.one_pool or None
    if args.cls == "StandaloneVM" and "template" in props:
        # A template-based standalone qube starts as a full copy of the template.
        return clone_vm(
            app,
            props.pop("template"),
            props.pop("name"),
            args.cls,
            pool=pool,
            pools=pools or None,
            ignore_volumes=("private",),
        )
    return app.add_new_vm(
        args.cls,
        props.pop("name"),
        props.pop("label"),
        props.pop("template", None),
        pool=pool,
        pools=pools or None,
    )


def _import_root(vm: QubesVM, path: str, move: bool) -> None:
    volume = vm.volumes.get("root")
    if volume is None:
        raise QubesException("the qube has no root volume (volumes are not supported yet)")
    with open(path, "rb") as image:
        volume.import_data_with_size(image, os.path.getsize(path))
    if move:
        os.unlink(path)


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    if args.help_classes:
        print("\n".join(app.list_vmclass()))
        return 0
    pools = _pools(parser, args.pool)
    props: dict[str, str] = dict(args.properties)
    if args.disp:
        props.setdefault("label", "red")
        args.cls = "DispVM"
    if args.standalone:
        args.cls = "StandaloneVM"
    if "label" not in props:
        parser.error("--label option is mandatory")
    if "name" not in props:
        parser.error("VMNAME is mandatory")
    root_source = args.root_copy_from or args.root_move_from
    if root_source and not os.path.exists(root_source):
        parser.error("File pointed by --root-copy-from/--root-move-from does not exist")
    if root_source and args.cls in ("AppVM", "DispVM"):
        parser.error(
            "--root-copy-from/--root-move-from used but this qube does not have "
            "its own 'root' volume (it uses its template's)"
        )
    try:
        props["label"] = app.get_label(props["label"]).name
    except QubesLabelNotFoundError:
        parser.error(
            f"no such label: {props['label']!r}; available: " + ", ".join(app.labels.names())
        )
    try:
        vm = _create(app, args, props, pools)
    except QubesException as e:
        log.error("Error creating VM: %s", e)
        return 1
    retcode = 0
    for name, value in props.items():
        try:
            vm.props.set(name, value)
        except QubesException as e:
            log.error("Error setting property %s (but VM created): %s", name, e)
            retcode = 2
    if root_source:
        try:
            _import_root(vm, root_source, bool(args.root_move_from))
        except (QubesException, OSError) as e:
            log.error("Error importing root volume (but VM created): %s", e)
            retcode = 3
    return retcode


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-create."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
