"""qvm-unpause: resume paused qubes (a suspended qube is woken with ``admin.vm.Resume``).

With ``--all``, qubes that have the ``internal`` feature set are left alone. A failure
is reported as ``Error: <message>``; the other qubes are still resumed and the exit
code is 1.
"""

from __future__ import annotations

import sys

from septa.client.app import Qubes
from septa.client.errors import QubesException

from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-unpause"


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-unpause."""
    return QubesArgumentParser(PROG, vmname_nargs="+", description="unpause a domain")


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    domains = parser.domains(app, args)
    if args.all_domains:
        domains = [vm for vm in domains if not vm.features.get("internal")]
    code = 0
    for vm in domains:
        try:
            if vm.is_suspended():
                vm.resume()
            else:
                vm.unpause()
        except (QubesException, OSError) as e:
            parser.print_error(e)
            code = 1
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-unpause."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
