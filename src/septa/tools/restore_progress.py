"""Progress of reading a backup: a rich progress bar when stderr is a terminal, plain
lines otherwise (every tenth of the total, or every 256 MiB when the total is unknown).

A :class:`ReadProgress` is the reader's progress callback: it gets the number of
bytes read from the backup stream so far, and shows it between ``__enter__`` and
``__exit__`` (so that the summary and question before can be printed undisturbed).
"""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

PLAIN_STEP = 256 << 20


def human(size: int) -> str:
    """A size as ``12.5 MiB``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


class ReadProgress:
    """Shows how much of the backup was read; use it as a context manager."""

    def __init__(self, total: int | None, what: str = "Reading the backup",
                 stream: TextIO | None = None) -> None:
        self.total = total
        self.what = what
        self.stream = stream or sys.stderr
        self.done = 0
        self._shown = -1
        self._started = False
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if self.stream.isatty():
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TaskProgressColumn(), DownloadColumn(binary_units=True),
                                 TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=Console(file=self.stream), transient=False)

    def __enter__(self) -> ReadProgress:
        self._started = True
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total, completed=self.done)
        return self

    def __call__(self, done: int) -> None:
        self.done = done
        if not self._started:
            return
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done)
            return
        step = self._step(done)
        if step > self._shown:
            self._shown = step
            self._line()

    def _step(self, done: int) -> int:
        if self.total:
            return min(10, done * 10 // self.total)
        return done // PLAIN_STEP

    def _line(self) -> None:
        if self.total:
            percent = min(100, self.done * 100 // self.total)
            text = f"{self.what}: {human(self.done)} of {human(self.total)} ({percent}%)"
        else:
            text = f"{self.what}: {human(self.done)}"
        print(text, file=self.stream, flush=True)

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self._started = False
        if kind is None and self.total:
            self.done = max(self.done, self.total)  # read to its end: the tar padding too
        if self._bar is not None:
            if kind is None and self._task is not None:
                self._bar.update(self._task, total=self.done, completed=self.done)
            self._bar.stop()
        elif kind is None and (self.total is None or self._shown < 10):
            self._line()
