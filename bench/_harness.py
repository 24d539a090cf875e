"""Shared pieces of the Septa benchmarks: a private septad, raw Admin API calls, timing, tables.

A benchmark starts its own ``septad`` under a fresh temporary ``SEPTA_ROOT``
(:func:`septad`), fills the registry through the API (:func:`make_qubes`), measures
repeated runs (:func:`calls_per_second`, :func:`wall_time`) and prints medians and
ratios in a plain-text :class:`Table`; never a single timing. Machine facts come
first (:func:`print_machine_facts`), since these machines are shared and noisy.

Run as a script, this module is the reference server of the Admin API benchmark::

    python bench/_harness.py reference-server SOCKET ANSWER_SIZE

a minimal asyncio unix-socket server that reads each request to EOF and answers
``0\\0`` followed by ANSWER_SIZE bytes: what the transport costs with one connection
per call, whatever the daemon does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from septa.paths import Paths

VENV = Path(__file__).resolve().parent.parent / ".venv"
VENV_BIN = VENV / "bin"
OK = b"0\0"
START_TIMEOUT = 20.0


class BenchError(RuntimeError):
    """A benchmark cannot go on (a daemon did not start, a call failed)."""


# --- machine facts ---------------------------------------------------------------------

def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _filesystem_of(path: Path) -> str:
    """The type of the filesystem holding ``path`` (matters: septad fsyncs each write)."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            mount = fields[1]
            inside = str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best):
                best, kind = mount, fields[2]
    return f"{kind} (mounted on {best or '?'})"


def print_machine_facts(title: str, extra: Sequence[tuple[str, str]] = ()) -> None:
    """The header of every benchmark: what ran where."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    facts = [
        ("cpu count", f"{os.cpu_count()} (usable by this process: {affinity})"),
        ("cpu model", _cpu_model()),
        ("kernel", platform.release()),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("load average", f"{load} (1, 5, 15 min, at start)"),
        ("temp dir", f"{tempfile.gettempdir()} on {_filesystem_of(Path(tempfile.gettempdir()))}"),
        *extra,
    ]
    print(f"== {title} ==")
    width = max(len(key) for key, _ in facts)
    for key, value in facts:
        print(f"{key:<{width}}  {value}")
    print(flush=True)


def print_log_problems(lines: Sequence[str]) -> None:
    """How many warning/error lines septad logged, and the first (nothing if none)."""
    problems = [line for line in lines if " ERROR " in line or " WARNING " in line]
    if problems:
        print(f"\nseptad logged {len(problems)} warning/error line(s); first: {problems[0]}")


# --- raw Admin API calls ---------------------------------------------------------------

def encode(method: str, dest: str, arg: str = "", payload: bytes = b"") -> bytes:
    """The bytes of one call as the Qubes client sends them (source dom0)."""
    return f"{method}+{arg} dom0 name {dest}\0".encode() + payload


def exchange(path: str, request: bytes) -> bytes:
    """One call = one connection: send, shut down the write side, read the answer to EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(262144):
            chunks.append(chunk)
    return b"".join(chunks)


def call_ok(path: str, request: bytes) -> bytes:
    """The whole answer of a call that must succeed; :class:`BenchError` otherwise."""
    answer = exchange(path, request)
    if not answer.startswith(OK):
        _refused(request, answer)
    return answer


def _refused(request: bytes, answer: bytes) -> None:
    shown = answer[:300].replace(b"\0", b" | ").decode("utf-8", "replace")
    raise BenchError(f"call {request[:80]!r} failed: {shown or '(empty answer)'}")


def _wait_for_socket(path: Path, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode} while starting:\n"
                             + log_tail(log))
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(path))
            return
        time.sleep(0.02)
    raise BenchError(f"{what} did not open {path} within {START_TIMEOUT:.0f} s:\n" + log_tail(log))


def log_tail(log: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log, or ``(no log)``."""
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def _stop(proc: subprocess.Popen[bytes], what: str) -> int:
    """SIGTERM, then SIGKILL after 10 s; the exit status (reported when not clean)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            print(f"note: {what} ignored SIGTERM for 10 s; killed", file=sys.stderr)
            proc.kill()
            proc.wait()
    return proc.returncode


def rss_kib(pid: int) -> int | None:
    """Resident memory of a process, from /proc."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


@dataclass
class Septad:
    """A running septad with its own state directory."""

    root: Path
    proc: subprocess.Popen[bytes]
    log: Path
    args: list[str] = field(default_factory=list)
    new_session: bool = False

    @property
    def socket(self) -> str:
        return str(Paths(self.root).admin_socket)

    @property
    def env(self) -> dict[str, str]:
        """The environment of a client of this daemon."""
        return {**os.environ, "SEPTA_ROOT": str(self.root)}


@contextlib.contextmanager
def temp_root(prefix: str = "septa-bench-", parent: str | None = None,
              mode: int | None = None) -> Iterator[Path]:
    """A fresh directory (in ``parent``, else the temp dir; ``mode`` if given), removed
    afterwards. Real qubes need ``parent="/var/tmp", mode=0o755``: the unprivileged QEMU
    user must be able to traverse it."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    if mode is not None:
        root.chmod(mode)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def septad(root: Path, args: Sequence[str] = (), new_session: bool = False) -> Iterator[Septad]:
    """Start ``septad`` with ``SEPTA_ROOT=root``; stop it on exit (its log goes to root).

    ``args`` are extra options (e.g. ``--debug``). With ``new_session`` the daemon does not
    get the terminal's Ctrl-C, so that the benchmark can still use it while cleaning up.
    """
    log = root / "septad.log"
    binary = VENV_BIN / "septad"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(binary), *args],
                                env={**os.environ, "SEPTA_ROOT": str(root)},
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=new_session)
    daemon = Septad(root, proc, log, list(args), new_session)
    try:
        _wait_for_socket(Path(daemon.socket), proc, "septad", log)
        yield daemon
    finally:
        status = _stop(daemon.proc, "septad")
        if status not in (0, -signal.SIGTERM):
            print(f"note: septad exited with status {status}; log tail:\n{log_tail(log)}",
                  file=sys.stderr)


def restart_septad(daemon: Septad) -> int:
    """Start ``daemon`` again on the same root after its process ended (e.g. something
    outside the benchmark stopped it); the old process's exit status."""
    status = _stop(daemon.proc, "septad")
    with open(daemon.log, "ab") as out:
        daemon.proc = subprocess.Popen([str(VENV_BIN / "septad"), *daemon.args],
                                       env=daemon.env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT,
                                       start_new_session=daemon.new_session)
    _wait_for_socket(Path(daemon.socket), daemon.proc, "septad", daemon.log)
    return status


@dataclass
class Creation:
    """How long the ``admin.vm.Create`` calls of :func:`make_qubes` took, one by one."""

    seconds: list[float]

    @property
    def total(self) -> float:
        return sum(self.seconds)

    def block_rates(self, blocks: int = 10) -> list[float]:
        """Calls/s in consecutive blocks of calls (the registry grows between them)."""
        size = max(1, len(self.seconds) // blocks)
        groups = [self.seconds[i:i + size] for i in range(0, len(self.seconds), size)]
        return [len(g) / sum(g) for g in groups if len(g) == size and sum(g) > 0]


def make_qubes(path: str, count: int, template: str = "tpl",
               progress: Callable[[int], None] | None = None) -> Creation:
    """One template, then ``count`` AppVMs ``app0`` .. based on it, through the API."""
    call_ok(path, encode("admin.vm.Create.TemplateVM", "dom0",
                         payload=f"name={template} label=black".encode()))
    seconds: list[float] = []
    for index in range(count):
        request = encode("admin.vm.Create.AppVM", "dom0", template,
                         f"name=app{index} label=red".encode())
        start = time.perf_counter()
        call_ok(path, request)
        seconds.append(time.perf_counter() - start)
        if progress is not None:
            progress(index + 1)
    return Creation(seconds)


# --- the reference server ----------------------------------------------------------------

async def _serve_reference(path: str, size: int) -> None:
    answer = OK + b"x" * size

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.write(answer)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    server = await asyncio.start_unix_server(handle, path=path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


@contextlib.contextmanager
def reference_server(directory: Path, size: int) -> Iterator[str]:
    """Run the reference server (its own process, like septad) answering ``size`` bytes."""
    path = directory / f"reference-{size}.sock"
    log = directory / f"reference-{size}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()),
                                 "reference-server", str(path), str(size)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_socket(path, proc, "reference server", log)
        yield str(path)
    finally:
        _stop(proc, "reference server")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# --- timing ------------------------------------------------------------------------------

def calls_per_second(path: str, request: bytes, clients: int, seconds: float) -> float:
    """Calls/s that ``clients`` clients, each calling in a loop for ``seconds``, achieve.

    Every answer must start with ``0\\0``. With several clients, each is a thread blocked
    in socket calls most of the time, so they overlap; they share one interpreter, as the
    same client loop does for every server measured.
    """
    if clients == 1:
        start = time.perf_counter()
        deadline = start + seconds
        done = 0
        while time.perf_counter() < deadline:
            _call_checked(path, request)
            done += 1
        return done / (time.perf_counter() - start)

    counts = [0] * clients
    ends = [0.0] * clients
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)
    deadline_box = [0.0]

    def client(slot: int) -> None:
        barrier.wait()
        deadline = deadline_box[0]
        done = 0
        try:
            while time.perf_counter() < deadline:
                _call_checked(path, request)
                done += 1
        except BaseException as exc:  # noqa: BLE001 - reported below, in the main thread
            errors.append(exc)
        counts[slot] = done
        ends[slot] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    deadline_box[0] = start + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise BenchError(f"{len(errors)} client(s) failed; first: {errors[0]!r}")
    return sum(counts) / (max(ends) - start)


def _call_checked(path: str, request: bytes) -> None:
    """:func:`call_ok` without formatting work on success (used in timing loops)."""
    answer = exchange(path, request)
    if not answer.startswith(OK):
        _refused(request, answer)


def wall_time(argv: Sequence[str], env: dict[str, str] | None = None,
              preexec: Callable[[], None] | None = None) -> float:
    """Seconds from spawning ``argv`` to its exit; output discarded, a failure raises."""
    start = time.perf_counter()
    proc = subprocess.run(list(argv), env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          preexec_fn=preexec, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"{argv[0]} exited with {proc.returncode}: "
                         + proc.stderr.decode(errors="replace")[-600:])
    return elapsed


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], fmt: str = "{:.0f}") -> str:
    """``min..max`` of the repetitions, to show the noise around a median."""
    return f"{fmt.format(min(values))}..{fmt.format(max(values))}"


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of per-repetition ratios (each pair measured back to back)."""
    return median([n / d for n, d in zip(numerators, denominators, strict=True)])


class Table:
    """A plain-text table: a header row, aligned columns, numbers right-aligned."""

    def __init__(self, *headers: str) -> None:
        self.headers = list(headers)
        self.rows: list[list[str]] = []

    def add(self, *cells: str) -> None:
        if len(cells) != len(self.headers):
            raise ValueError("row and header lengths differ")
        self.rows.append(list(cells))

    def render(self) -> str:
        widths = [max(len(row[i]) for row in [self.headers, *self.rows])
                  for i in range(len(self.headers))]

        def line(cells: list[str]) -> str:
            parts = [cells[0].ljust(widths[0])]
            parts += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
            return "  ".join(parts).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(self.headers), rule, *(line(row) for row in self.rows)])

    def print(self) -> None:
        print(self.render(), flush=True)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "reference-server":
        asyncio.run(_serve_reference(argv[1], int(argv[2])))
        return 0
    print(f"usage: {sys.argv[0]} reference-server SOCKET ANSWER_SIZE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
