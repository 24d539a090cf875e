"""Log output of the tools, set by ``--verbose`` / ``--quiet`` the way Qubes' tools do it.

At the default verbosity, messages appear as ``<logger>: <message>`` on stderr from
INFO up; ``-v`` adds DEBUG with time and place; each ``-q`` steps down to warnings and
errors shown as bare messages.
"""

from __future__ import annotations

import logging
import sys

FORMAT_CONSOLE = "%(name)s: %(message)s"
FORMAT_QUIET = "%(message)s"
FORMAT_DEBUG = (
    "%(asctime)s [%(processName)s %(module)s.%(funcName)s:%(lineno)d] %(name)s: %(message)s"
)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each message."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_handler = _StderrHandler()


def configure(verbose: int, quiet: int) -> None:
    """Route log records to stderr according to the tool's verbosity options."""
    level = verbose - quiet
    root = logging.getLogger()
    if _handler not in root.handlers:
        root.addHandler(_handler)
    if level >= 2:
        root.setLevel(logging.DEBUG)
        _handler.setFormatter(logging.Formatter(FORMAT_DEBUG))
    elif level >= 1:
        root.setLevel(logging.INFO)
        _handler.setFormatter(logging.Formatter(FORMAT_CONSOLE))
    else:
        root.setLevel(logging.WARNING)
        _handler.setFormatter(logging.Formatter(FORMAT_QUIET))
