"""The command line of qvm-ls: formatting, filtering and sorting options, help actions."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from .ls_columns import COLUMNS, FORMATS
from .ls_filters import POWER_FILTERS
from .parser import QubesArgumentParser

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
