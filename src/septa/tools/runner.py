"""Running a tool's body: turn every failure into a one-line message and an exit code.

Qubes' conventions: 0 success, 1 runtime error, 2 usage error (argparse). Admin API
errors become ``<prog>: error: <message>`` on stderr, never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from septa.client.errors import QubesException


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run(prog: str, body: Callable[[], int | None]) -> int:
    """Call ``body`` and return its exit code, reporting any failure on stderr."""
    try:
        return _exit_code(body())
    except SystemExit as e:
        return _exit_code(e.code)
    except QubesException as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `qvm-ls | head`); stop quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
