"""Running build commands: output to the build log, progress to the caller, errors with context.

Every command of a build writes into one log file; a failing command raises
:class:`BuildError` carrying the last lines of its output, so that the CLI can show why
without the log (which a failed build deletes with the rest of its output).
"""

from __future__ import annotations

import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

#: ``progress(stage, fraction)``: stage name, and the fraction (0..1) of the whole build.
ProgressFn = Callable[[str, float], None]


class BuildError(RuntimeError):
    """A template build failed; the message ends with the failing command's last output."""


class BuildLog:
    """The log of one build, and the progress reporting of its stages.

    Stages are declared with their share of the whole build; ``report(stage, f)`` turns a
    fraction of one stage into a fraction of the build (never going backwards).
    """

    def __init__(self, stream: TextIO, progress: ProgressFn | None, weights: dict[str, float]):
        self.stream = stream
        self.progress = progress
        total = sum(weights.values())
        self._start: dict[str, float] = {}
        self._share: dict[str, float] = {}
        acc = 0.0
        for stage, weight in weights.items():
            self._start[stage] = acc / total
            self._share[stage] = weight / total
            acc += weight
        self._done = 0.0
        self.started = time.monotonic()

    def write(self, line: str) -> None:
        """Add a line to the log."""
        self.stream.write(line.rstrip("\n") + "\n")
        self.stream.flush()

    def report(self, stage: str, fraction: float) -> None:
        """Report that ``stage`` is ``fraction`` done."""
        fraction = min(max(fraction, 0.0), 1.0)
        overall = self._start.get(stage, self._done) + self._share.get(stage, 0.0) * fraction
        self._done = max(self._done, overall)
        self.write(f"septa: [{time.monotonic() - self.started:7.1f}s] {stage} {fraction:.0%}")
        if self.progress is not None:
            self.progress(stage, self._done)

    def run(
        self,
        argv: Sequence[str],
        *,
        on_line: Callable[[str], None] | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
    ) -> None:
        """Run a command, its output into the log (and line by line to ``on_line``)."""
        self.write("septa: $ " + " ".join(argv))
        tail: deque[str] = deque(maxlen=25)
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            raise BuildError(f"cannot run {argv[0]}: {exc}") from exc
        assert proc.stdout is not None
        try:
            if stdin is not None:
                assert proc.stdin is not None
                proc.stdin.write(stdin)
                proc.stdin.close()
            for line in proc.stdout:
                self.stream.write(line)
                tail.append(line.rstrip("\n"))
                if on_line is not None:
                    on_line(line.rstrip("\n"))
            self.stream.flush()
            rc = proc.wait()
        except BaseException:
            # interrupted (or the callback failed): stop the command before the caller
            # deletes the tree it works in
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        if rc != 0:
            output = "\n".join(tail)
            raise BuildError(f"{Path(argv[0]).name} failed (exit status {rc}):\n{output}")
