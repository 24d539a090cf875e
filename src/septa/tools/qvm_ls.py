"""qvm-ls: list qubes and their properties, in Qubes 4.3's column format."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from septa.client.app import Qubes
from septa.client.bulk import fetch_all_properties
from septa.client.errors import QubesVMNotFoundError
from septa.client.vm import QubesVM

from .ls_columns import (
    COLUMNS,
    FORMATS,
    NUMERIC_COLUMNS,
    Column,
    get_column,
    needs_properties,
    prop_true,
    prop_value,
)
from .ls_filters import POWER_FILTERS, apply_filters
from .parser import QubesArgumentParser
from .runner import run
from .spinner import DummySpinner, Spinner
from .table import print_table

PROG = "qvm-ls"


class _HelpColumns(argparse.Action):
    """Print the defined columns with their descriptions, then exit."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings,
            argparse.SUPPRESS,
            nargs=0,
            default=argparse.SUPPRESS,
            help="list the available columns with a description and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        width = max(len(head) for head in COLUMNS)
        wrapper = textwrap.TextWrapper(
            width=80, initial_indent="  ", subsequent_indent=" " * (width + 4)
        )
        lines = ["Available columns:"]
        lines += [wrapper.fill(f"{head:{width}s}  {COLUMNS[head].doc}") for head in sorted(COLUMNS)]
        lines += [
            "",
            "Any qube property can be a column too; "
            "see qvm-prefs --help-properties for their names.",
        ]
        print("\n".join(lines) + "\n")
        parser.exit(0)


class _HelpFormats(argparse.Action):
    """Print the preset formats with their columns, then exit."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings,
            argparse.SUPPRESS,
            nargs=0,
            default=argparse.SUPPRESS,
            help="list the available formats with their columns and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        width = max(len(name) for name in FORMATS)
        text = "Available formats:\n" + "".join(
            f"  {name:{width}s}  {','.join(FORMATS[name]).upper()}\n" for name in sorted(FORMATS)
        )
        print(text)
        parser.exit(0)


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-ls."""
    wrapper = textwrap.TextWrapper(
        width=80, break_on_hyphens=False, initial_indent="  ", subsequent_indent="  "
    )
    parser = QubesArgumentParser(
        PROG,
        vmname_nargs="*",
        formatter_class=argparse.RawTextHelpFormatter,
        description="List qubes and their properties.",
        epilog="formats (see --help-formats):\n{}\n\ncolumns (see --help-columns):\n{}".format(
            wrapper.fill(", ".join(sorted(FORMATS))), wrapper.fill(", ".join(sorted(COLUMNS)))
        ),
    )
    fmt = parser.add_argument_group(title="formatting options")
    exclusive = fmt.add_mutually_exclusive_group()
    exclusive.add_argument(
        "--format",
        "-o",
        metavar="FORMAT",
        choices=FORMATS.keys(),
        default="simple",
        help="a preset set of columns",
    )
    exclusive.add_argument(
        "--fields", "-O", metavar="FIELD,...", help="the columns to show, comma separated"
    )
    fmt.add_argument(
        "--tree",
        "-t",
        action="store_const",
        const="tree",
        help="show qubes as a tree of their network connections",
    )
    fmt.add_argument(
        "--raw-data", action="store_true", help="no header, cells separated by '|' (for scripts)"
    )
    fmt.add_argument(
        "--raw-list",
        action="store_true",
        help="only the names, one a line (--raw-data --fields=name)",
    )
    for short, name in (("-d", "disk"), ("-n", "network"), ("-k", "kernel")):
        exclusive.add_argument(
            f"--{name}",
            short,
            action="store_const",
            dest="format",
            const=name,
            help=f"same as --format={name}",
        )
    fmt.add_argument("--help-formats", action=_HelpFormats)
    fmt.add_argument("--help-columns", action=_HelpColumns)

    filters = parser.add_argument_group(title="filtering options")
    filters.add_argument(
        "--class", nargs="+", metavar="CLASS", dest="klass", help="only qubes of these classes"
    )
    filters.add_argument("--label", nargs="+", metavar="LABEL", help="only qubes with these labels")
    filters.add_argument(
        "--tags", nargs="+", metavar="TAG", help="only qubes with at least one of these tags"
    )
    filters.add_argument(
        "--exclude-tags", nargs="+", metavar="TAG", help="leave out qubes with any of these tags"
    )
    for state in POWER_FILTERS:
        filters.add_argument(f"--{state}", action="store_true", help=f"only {state} qubes")
    filters.add_argument(
        "--template-source",
        nargs="+",
        metavar="TEMPLATE",
        help='only qubes based on these templates ("" for none)',
    )
    filters.add_argument(
        "--netvm-is", nargs="+", metavar="NETVM", help="only qubes connected through these netvms"
    )
    filters.add_argument(
        "--internal",
        metavar="<y|n>",
        default="both",
        choices=["y", "yes", "n", "no"],
        help="only internal qubes (y), or none of them (n)",
    )
    filters.add_argument(
        "--servicevm",
        metavar="<y|n>",
        default="both",
        choices=["y", "yes", "n", "no"],
        help="only service qubes (y), or none of them (n)",
    )
    filters.add_argument(
        "--pending-update", action="store_true", help="only qubes with updates pending"
    )
    filters.add_argument(
        "--features",
        nargs="+",
        metavar="FEATURE=VALUE",
        help="only qubes with all these feature values (no VALUE: unset; '' or \"\": empty)",
    )
    filters.add_argument(
        "--prefs",
        nargs="+",
        metavar="PREFERENCE=VALUE",
        help="only qubes with all these property values (no VALUE: None; '' or \"\": empty)",
    )

    sort = parser.add_argument_group(title="sorting options")
    sort.add_argument(
        "--sort", metavar="COLUMN", default="NAME", help="sort by this column instead of NAME"
    )
    sort.add_argument("--reverse", action="store_true", default=False, help="reverse the order")
    sort.add_argument(
        "--ignore-case", action="store_true", default=False, help="sort without regard to case"
    )

    parser.add_argument(
        "--spinner", action="store_true", dest="spinner", help="show progress on stderr (default)"
    )
    parser.add_argument(
        "--no-spinner", action="store_false", dest="spinner", help="do not show progress"
    )
    parser.set_defaults(spinner=True)
    return parser


# -- table ----------------------------------------------------------------------------


def _row(columns: Sequence[Column], vm: QubesVM, spinner: Spinner, depth: int = 0) -> list[str]:
    cells = []
    for col in columns:
        cell = col.cell(vm)
        if depth > 0 and col.head == "NAME":
            cell = "  " * (depth - 1) + "└─" + cell
        cells.append(cell)
        spinner.update()
    return cells


def _netvm_name(vm: QubesVM) -> str | None:
    value = prop_value(vm, "netvm")
    return None if value is None or value.is_none else value.text


def _network_tree(app: Qubes, domains: list[QubesVM]) -> list[tuple[int, QubesVM]]:
    """(depth, qube) in network tree order: standalone qubes, then each netvm's subtree."""
    remaining = sorted(domains)
    tree: list[tuple[int, QubesVM]] = []
    for vm in list(remaining):
        if prop_value(vm, "netvm") is None or (
            _netvm_name(vm) is None and not prop_true(vm, "provides_network")
        ):
            tree.append((0, vm))
            remaining.remove(vm)

    def children(parent: QubesVM, depth: int) -> list[tuple[int, QubesVM]]:
        result: list[tuple[int, QubesVM]] = []
        for child in app.domains:
            if _netvm_name(child) != parent.name or child not in remaining:
                continue
            result.append((depth, child))
            if prop_true(child, "provides_network"):
                result += children(child, depth + 1)
        return result

    for vm in list(remaining):
        if _netvm_name(vm) is None and prop_true(vm, "provides_network"):
            tree.append((0, vm))
            remaining.remove(vm)
            tree += children(vm, 1)
    return tree


def _sort_key(column: str, ignore_case: bool) -> Any:
    if column in NUMERIC_COLUMNS:

        def numeric(cell: str) -> int:
            try:
                return int(cell[:-1] if cell.endswith("%") else cell)
            except ValueError:
                return 0

        return numeric
    return (lambda cell: cell.upper()) if ignore_case else (lambda cell: cell)


def write_table(
    app: Qubes,
    domains: list[QubesVM],
    columns: list[Column],
    args: argparse.Namespace,
    spinner: Spinner,
) -> None:
    """Print the table (or the raw lines) for the selected qubes."""
    if args.raw_data:
        for vm in sorted(domains):
            try:
                sys.stdout.write("|".join(_row(columns, vm, spinner)) + "\n")
            except QubesVMNotFoundError:
                continue
        return
    spinner.show("please wait...")
    heads = [col.head for col in columns]
    rows = []
    spinner.update()
    if args.tree:
        rows = [_row(columns, vm, spinner, depth) for depth, vm in _network_tree(app, domains)]
    else:
        for vm in sorted(domains):
            try:
                rows.append(_row(columns, vm, spinner))
            except QubesVMNotFoundError:
                continue
        order = args.sort.upper()
        if order in heads:
            index = heads.index(order)
            key = _sort_key(order, args.ignore_case)
            rows.sort(key=lambda row: key(row[index]), reverse=args.reverse)
    spinner.hide()
    print_table([heads, *rows])


# -- main -------------------------------------------------------------------------------


def _select(parser: QubesArgumentParser, app: Qubes, args: argparse.Namespace) -> list[QubesVM]:
    if args.all_domains:
        # Unlike other tools, --all in qvm-ls includes dom0.
        return [vm for vm in app.domains if vm.name not in args.exclude]
    if parser.vm_names(args) or args.exclude:
        return parser.domains(app, args)
    return app.domains.values()


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    app.cache_enabled = True
    if args.raw_list:
        args.raw_data = True
        args.fields = "name"
    names = [f.strip() for f in args.fields.split(",")] if args.fields else FORMATS[args.format]
    columns = [get_column(name) for name in names]
    if args.spinner and not args.raw_data:
        spinner: Spinner = Spinner(sys.stderr)
    else:
        spinner = DummySpinner(sys.stderr)
    domains = _select(parser, app, args)
    if needs_properties(columns) or args.tree or args.label or args.prefs:
        fetch_all_properties(domains)
    domains = apply_filters(domains, args, parser, spinner)
    write_table(app, domains, columns, args, spinner)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-ls."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
