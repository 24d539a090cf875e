"""qvm-prefs: list, show, set or reset the properties of a qube."""

from __future__ import annotations

import sys

from septa.client.app import Qubes

from .prefs import get_parser, process_actions
from .runner import run

PROG = "qvm-prefs"


def _main(argv: list[str] | None) -> int:
    parser = get_parser(PROG, 1)
    args = parser.parse_args(argv)
    app = Qubes()
    vm = parser.domains(app, args)[0]
    return process_actions(parser, args, vm.props)


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-prefs."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
