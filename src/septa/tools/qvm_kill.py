"""qvm-kill: stop qubes at once, without a graceful shutdown.

A qube that is not running is skipped silently. A failure is reported as
``Error: Failed to kill '<name>': <message>``; the others are still killed and the
exit code is 1.
"""

from __future__ import annotations

import sys

from septa.client.app import Qubes
from septa.client.errors import QubesException, QubesVMNotStartedError

from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-kill"


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-kill."""
    return QubesArgumentParser(
        PROG,
        vmname_nargs="+",
        description="immediately terminate a qube without a graceful shutdown sequence",
    )


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    code = 0
    for vm in parser.domains(app, args):
        try:
            vm.kill()
        except QubesVMNotStartedError:
            pass
        except (QubesException, OSError) as e:
            parser.print_error(f"Failed to kill '{vm.name}': {e}")
            code = 1
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-kill."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
