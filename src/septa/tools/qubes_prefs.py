"""qubes-prefs: list, show, set or reset the global properties of the system."""

from __future__ import annotations

import sys

from septa.client.app import Qubes

from .prefs import get_parser, process_actions
from .runner import run

PROG = "qubes-prefs"


def _main(argv: list[str] | None) -> int:
    parser = get_parser(PROG, None)
    args = parser.parse_args(argv)
    return process_actions(parser, args, Qubes().props)


def main(argv: list[str] | None = None) -> int:
    """Entry point of qubes-prefs."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
