"""The table qvm-ls prints: rows, sorting, the network tree and the raw form."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from septa.client.app import Qubes
from septa.client.errors import QubesVMNotFoundError
from septa.client.vm import QubesVM

from .ls_columns import NUMERIC_COLUMNS, Column, prop_true, prop_value
from .spinner import Spinner
from .table import print_table


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
