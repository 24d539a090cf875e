"""qvm-ls: list qubes and their properties, in Qubes 4.3's column format."""

from __future__ import annotations

import argparse
import sys

from septa.client.app import Qubes
from septa.client.bulk import fetch_all_properties
from septa.client.vm import QubesVM

from .ls_columns import FORMATS, get_column, needs_properties
from .ls_filters import apply_filters
from .ls_parser import PROG, get_parser
from .ls_table import write_table
from .parser import QubesArgumentParser
from .runner import run
from .spinner import DummySpinner, Spinner

__all__ = ["get_parser", "main"]


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
