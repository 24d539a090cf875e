"""The progress indicator qvm-ls shows on stderr while it gathers data.

On a terminal it is a turning bar that is erased at the end; when stderr is not a
terminal it prints one dot per step and a newline at the end, as Qubes' does.
"""

from __future__ import annotations

import itertools
import time
from typing import TextIO

_TTY_CHARS = "-\\|/" * 4 + "-._.-^" * 2
#: Seconds between two redraws on a terminal (updates in between are not shown).
_TTY_INTERVAL = 0.05


class Spinner:
    """Shows a prompt, advances on :meth:`update`, disappears on :meth:`hide`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        try:
            self.is_tty = stream.isatty()
        except (AttributeError, ValueError):
            self.is_tty = False
        self._chars = itertools.cycle(_TTY_CHARS if self.is_tty else ".")
        self._step = "\b" if self.is_tty else ""
        self._shown = 0
        self._last_draw = 0.0

    def show(self, prompt: str) -> None:
        """Start with ``prompt``."""
        self._shown = len(prompt) + 2
        self.stream.write(f"{prompt} {next(self._chars)}")
        self.stream.flush()

    def update(self) -> None:
        """One step of progress."""
        if not self.is_tty:
            # Dots are only buffered here; they reach the file by hide() at the latest.
            self.stream.write(next(self._chars))
            return
        now = time.monotonic()
        if now - self._last_draw >= _TTY_INTERVAL:
            self._last_draw = now
            self.stream.write(self._step + next(self._chars))
            self.stream.flush()

    def hide(self) -> None:
        """Remove the spinner (on a terminal) or end its line."""
        if self.is_tty:
            self.stream.write("\r" + " " * self._shown + "\r")
        else:
            self.stream.write("\n")
        self.stream.flush()


class DummySpinner(Spinner):
    """A spinner that shows nothing."""

    def show(self, prompt: str) -> None:
        """Do nothing."""

    def update(self) -> None:
        """Do nothing."""

    def hide(self) -> None:
        """Do nothing."""
