"""What qvm-prefs and qubes-prefs share: list, get, set and reset properties of a target.

The target is a qube's properties (qvm-prefs) or the global ones (qubes-prefs). A
listing prints ``NAME  -  VALUE`` for a value that was set, ``NAME  D  VALUE`` for a
default one and ``NAME  U`` for a property without a value, names padded to the
longest one, sorted by name.
"""

from __future__ import annotations

import argparse
import textwrap

from septa.client.errors import QubesException, QubesNoSuchPropertyError
from septa.client.properties import Properties

from .parser import QubesArgumentParser

#: Properties for which the value "none" (any case) means "no qube".
NONE_MEANS_EMPTY = ("default_dispvm", "netvm", "template", "guivm", "audiovm")


def get_parser(prog: str, vmname_nargs: int | None) -> QubesArgumentParser:
    """The command line shared by qvm-prefs (one qube) and qubes-prefs (no qube)."""
    parser = QubesArgumentParser(prog, vmname_nargs=vmname_nargs)
    parser.add_argument(
        "--help-properties",
        action="store_true",
        help="list the properties with a short description and exit",
    )
    parser.add_argument(
        "--hide-default",
        action="store_true",
        help="leave out properties that have their default value",
    )
    parser.add_argument(
        "--get", "-g", action="store_true", help="ignored; accepted for older scripts"
    )
    parser.add_argument(
        "--set", "-s", action="store_true", help="ignored; accepted for older scripts"
    )
    parser.add_argument(
        "property", metavar="PROPERTY", nargs="?", help="the property to show or change"
    )
    parser.add_argument("value", metavar="VALUE", nargs="?", help="the new value of the property")
    parser.add_argument(
        "--default",
        "-D",
        dest="delete",
        action="store_true",
        help="reset the property to its default value",
    )
    return parser


def _help_properties(target: Properties) -> int:
    names = target.names()
    width = max((len(n) for n in names), default=0)
    wrapper = textwrap.TextWrapper(
        width=80, initial_indent="  ", subsequent_indent=" " * (width + 4)
    )
    for name in sorted(names):
        print(wrapper.fill(f"{name:{width}s}  {target.help(name)}"))
    return 0


def _list(target: Properties, hide_default: bool) -> int:
    names = target.names()
    values = target.fetch_all()
    width = max((len(n) for n in names), default=0)
    for name in sorted(names):
        value = values.get(name)
        if value is None or not value.has_value:
            print(f"{name:{width}s}  U")
        elif not value.is_default:
            print(f"{name:{width}s}  -  {value.display()}")
        elif not hide_default:
            print(f"{name:{width}s}  D  {value.display()}")
    return 0


def _change(parser: QubesArgumentParser, args: argparse.Namespace, target: Properties) -> int:
    try:
        if args.value is not None:
            value = args.value
            if value.lower() == "none" and args.property in NONE_MEANS_EMPTY:
                value = ""
            target.set(args.property, value)
        else:
            target.reset(args.property)
    except QubesNoSuchPropertyError:
        parser.error(f"no such property: {args.property!r}")
    except QubesException as e:
        parser.error_runtime(e)
    return 0


def _show(parser: QubesArgumentParser, args: argparse.Namespace, target: Properties) -> int:
    try:
        value = target.get(args.property)
    except QubesNoSuchPropertyError:
        parser.error(f"no such property: {args.property!r}")
    except QubesException as e:
        parser.error_runtime(e)
    if args.hide_default and value.is_default:
        return 0
    if not value.has_value:
        parser.error_runtime(f"property {args.property!r} has no value")
    if not value.is_none:
        print(value.text)
    return 0


def process_actions(
    parser: QubesArgumentParser, args: argparse.Namespace, target: Properties
) -> int:
    """Do what the parsed arguments ask of the target's properties."""
    if args.help_properties:
        return _help_properties(target)
    if args.property is None:
        return _list(target, args.hide_default)
    args.property = args.property.replace("-", "_")
    if args.value is not None or args.delete:
        return _change(parser, args, target)
    return _show(parser, args, target)
