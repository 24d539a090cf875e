"""Qube boot time and host memory under septad, against a bare QEMU boot of the same guest.

Starts a private ``septad`` under a fresh ``SEPTA_ROOT`` in /var/tmp (mode 0755: the
unprivileged QEMU user must traverse it), installs the ``debian-12`` template
(``qvm-template build``, normally from the build cache) and creates ``--qubes`` AppVMs.

1. Cold start to agent-ready: the wall time of ``qvm-start`` of a halted AppVM (it
   returns once the guest agent has sent READY), ``qvm-kill`` between runs. The
   reference, measured in the same run and interleaved repetition by repetition, is a
   bare ``qemu-system-x86_64`` booting the same kernel and initrd from a fresh qcow2
   overlay on the template's root.img, with the qube's memory and vcpus, the same accel,
   q35, virtio-blk root, a virtio console and the virtio-serial port
   ``org.septa.agent.0`` on a unix socket: timed from process start until the agent's
   READY frame arrives on that socket. One untimed warm-up boot of each comes first (the
   AppVM's first boot also formats its private volume); the host page cache is warm.
   Septa's start is split where libvirtd creates the QEMU process (the process's start
   time in /proc) and where it lets the vCPUs run (libvirt's ``Started`` event, from
   ``virsh event``): cheap, and nothing is needed from septad. Before each repetition the
   benchmark waits up to ``--quiet`` s for other sessions' QEMU processes to end.
2. Host memory per idle qube: ``--qubes`` AppVMs started at once (one ``qvm-start`` per
   qube, concurrently) plus one bare reference, ``--idle`` seconds idle, then the RSS,
   PSS and the resident part of the guest RAM of each QEMU process (/proc/PID/smaps),
   and the drop of the host's MemAvailable.
3. How many idle qubes fit: MemAvailable (with no qube running) divided by the measured
   cost of one idle qube; nothing is started beyond ``--qubes`` + 1.

Everything started is stopped, and the root removed, on success, failure or Ctrl-C. The
machine is shared: when septad is stopped from outside, it is started again on the same
root and the broken step is redone (reported at the end). The bare reference boots hard
links of the template build's files, since another session may replace the build.

Usage: ``.venv/bin/python bench/boot.py [--repeat R] [--qubes N] [--idle S] [--quiet S]``
(as root, with libvirtd running).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType as StackFrame
from typing import NoReturn, TypeVar

import _harness as h
from septa.agent.wire import PORT_NAME, FrameDecoder, FrameType
from septa.hypervisor.accel import choose_accel
from septa.hypervisor.libvirt_engine import instance_prefix
from septa.templates.builder import TemplateImage, cached_build
from septa.templates.buildlog import BuildError
from septa.templates.recipe import recipe_hash

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "templates" / "recipes" / "debian-12.toml"
TEMPLATE = "debian-12"
QEMU = "qemu-system-x86_64"
VIRSH = ["virsh", "-c", "qemu:///system"]
LIBVIRT_RUN = Path("/run/libvirt/qemu")
BARE_CMDLINE = "root=/dev/vda rw console=hvc0"
BOOT_TIMEOUT = 180.0
TOOL_TIMEOUT = 600.0
MAX_AT_ONCE = 6
MAX_RESTARTS = 5
T = TypeVar("T")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024


def _interrupted(signum: int, frame: StackFrame | None) -> NoReturn:
    """SIGTERM behaves like Ctrl-C: unwind through the cleanup code."""
    raise KeyboardInterrupt


# --- host facts ---------------------------------------------------------------------------

def meminfo() -> dict[str, int]:
    """/proc/meminfo in KiB."""
    values: dict[str, int] = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        with contextlib.suppress(ValueError, IndexError):
            values[key] = int(rest.split()[0])
    return values


def memory_cgroup_limit() -> str:
    """The memory limit of this process's cgroup (v1 or v2), if any."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, controllers, path = line.split(":", 2)
        if controllers == "memory" or (hid == "0" and controllers == ""):
            for name in ("memory.limit_in_bytes", "memory.max"):
                base = Path("/sys/fs/cgroup") / ("memory" if controllers else "")
                candidate = base / path.lstrip("/") / name
                with contextlib.suppress(OSError, ValueError):
                    text = candidate.read_text().strip()
                    if text == "max" or int(text) >= 1 << 60:
                        return "none"
                    return f"{int(text) / 2**30:.1f} GiB"
    return "unknown"


def _output_lines(argv: Sequence[str]) -> list[str]:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=30).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]
    return []


def qemu_pids() -> list[int]:
    """Every qemu-system process on the host (ours and others')."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().startswith("qemu-system"):
                    pids.append(int(entry.name))
    return pids


def process_start(pid: int) -> float | None:
    """When a process started, in CLOCK_BOOTTIME seconds (/proc/PID/stat, 1/CLK_TCK s)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19]) / CLK_TCK
    return None


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass
class QemuMemory:
    """Memory of one QEMU process, KiB."""

    rss: int
    pss: int
    guest_rss: int
    tcg_rss: int
    tcg_size: int


def qemu_memory(pid: int, guest_kib: int) -> QemuMemory:
    """RSS, PSS, the resident part of the guest RAM (the anonymous mapping of the guest's
    memory size) and of TCG's translated code (anonymous ``rwx`` mappings) of a QEMU
    process, from /proc/PID/smaps."""
    header = re.compile(r"^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ (\d+)\s*(\S*)")
    rss = pss = guest = tcg = tcg_size = 0
    size = map_rss = 0
    anonymous_rwx = False
    candidates: list[tuple[int, int]] = []

    def close_mapping() -> None:
        nonlocal tcg, tcg_size
        if guest_kib <= size <= guest_kib + 4 * MIB:
            candidates.append((size, map_rss))
        if anonymous_rwx:
            tcg += map_rss
            tcg_size += size

    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError as exc:
        raise h.BenchError(f"cannot read the memory map of QEMU {pid}: {exc}") from exc
    for line in lines:
        match = header.match(line)
        if match:
            close_mapping()
            size = map_rss = 0
            anonymous_rwx = match[1].startswith("rwx") and match[2] == "0" and not match[3]
            continue
        key, _, rest = line.partition(":")
        if key in ("Size", "Rss", "Pss"):
            value = int(rest.split()[0])
            if key == "Size":
                size = value
            elif key == "Rss":
                map_rss = value
                rss += value
            else:
                pss += value
    close_mapping()
    if candidates:
        guest = max(candidates, key=lambda c: c[1])[1]
    return QemuMemory(rss, pss, guest, tcg, tcg_size)


# --- running tools ------------------------------------------------------------------------

def tool(daemon: h.Septad, name: str, *args: str, timeout: float = TOOL_TIMEOUT) -> str:
    """Run one of our tools against ``daemon``; its stdout; :class:`BenchError` on failure."""
    try:
        proc = subprocess.run([str(h.VENV_BIN / name), *args], env=daemon.env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise h.BenchError(f"{name} {' '.join(args)} took more than {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise h.BenchError(f"{name} {' '.join(args)} exited with {proc.returncode}: "
                           + (proc.stderr or proc.stdout)[-1500:])
    return proc.stdout


def domain_pid(domain: str) -> int | None:
    """The QEMU process of a running libvirt domain (libvirt's PID file)."""
    with contextlib.suppress(OSError, ValueError):
        return int((LIBVIRT_RUN / f"{domain}.pid").read_text().strip())
    return None


class QemuWatcher(threading.Thread):
    """Notes when libvirtd creates the QEMU process of ``domain`` (polls its PID file)."""

    def __init__(self, domain: str, after: float) -> None:
        super().__init__(daemon=True)
        self.domain = domain
        self.after = after
        self.started_at: float | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            pid = domain_pid(self.domain)
            if pid is not None:
                start = process_start(pid)
                if start is not None and start >= self.after - 1.0 / CLK_TCK:
                    self.started_at = start
                    return
            self._stop_event.wait(0.005)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


class LifecycleEvents:
    """libvirt's lifecycle events with libvirtd's timestamps (ms), from ``virsh event``.

    The ``Started`` event of a new domain comes once libvirtd has set QEMU up over QMP and
    let its vCPUs run (QEMU is launched paused, ``-S``).
    """

    LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\+0000: "
                      r"event 'lifecycle' for domain '?([^']+?)'?: (\w+)")

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()
        self.proc = subprocess.Popen([*VIRSH, "event", "--all", "--loop", "--timestamp"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            match = self.LINE.match(line)
            if match:
                when = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S.%f")
                stamp = when.replace(tzinfo=UTC).timestamp()
                with self._lock:
                    self.events.append((stamp, match[2], match[3]))

    def first(self, domain: str, event: str, after: float, wait: float = 2.0) -> float | None:
        """Epoch time of the first ``event`` of ``domain`` at or after ``after``."""
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                for stamp, name, kind in self.events:
                    if name == domain and kind == event and stamp >= after - 0.001:
                        return stamp
            if time.monotonic() > deadline or self.proc.poll() is not None:
                return None
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)


@dataclass
class SeptaRun:
    total: float
    to_qemu: float | None
    to_vcpus: float | None


def septa_start(daemon: h.Septad, qube: str, domain: str,
                events: LifecycleEvents) -> SeptaRun:
    """``qvm-start qube``, timed, split where its QEMU process is created and where libvirtd
    lets its vCPUs run."""
    if domain_pid(domain) is not None:
        raise h.BenchError(f"{domain} still has a PID file before its start")
    t0 = boottime()
    t0_epoch = time.time()
    watcher = QemuWatcher(domain, t0)
    watcher.start()
    try:
        total = h.wall_time([str(h.VENV_BIN / "qvm-start"), qube], env=daemon.env)
    finally:
        watcher.stop()
    started = events.first(domain, "Started", t0_epoch)
    return SeptaRun(total, None if watcher.started_at is None else watcher.started_at - t0,
                    None if started is None else started - t0_epoch)


def septa_kill(daemon: h.Septad, qube: str, domain: str) -> None:
    tool(daemon, "qvm-kill", qube)
    deadline = time.monotonic() + 30
    while domain_pid(domain) is not None:
        if time.monotonic() > deadline:
            raise h.BenchError(f"{domain} still has a PID file 30 s after qvm-kill")
        time.sleep(0.05)


# --- the bare reference -------------------------------------------------------------------

@dataclass
class BareRun:
    total: float
    hello: float
    uptime: float


@dataclass(frozen=True)
class GuestImage:
    """The template build's kernel, initrd and raw root image (private hard links)."""

    kernel: Path
    initrd: Path
    root: Path
    recipe_hash: str
    kernel_version: str


def link_image(image: TemplateImage, directory: Path) -> GuestImage:
    """Hard-link the build's files into ``directory``: another session may replace the build
    in the cache (it is rebuilt whenever the agent's sources change) while we run."""
    directory.mkdir()
    paths = []
    for source in (image.kernel, image.initrd, image.root):
        target = directory / source.name
        try:
            os.link(source, target)
        except OSError:
            subprocess.run(["cp", "--sparse=always", str(source), str(target)], check=True,
                           timeout=600)
        paths.append(target)
    return GuestImage(paths[0], paths[1], paths[2], image.recipe_hash, image.kernel_version)


@dataclass
class BareQemu:
    """The reference: plain QEMU, same kernel, initrd, root image, memory, vcpus, accel."""

    image: GuestImage
    workdir: Path
    memory_mib: int
    vcpus: int
    accel: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    runs: int = 0

    def command(self, overlay: Path, agent: Path, console: Path) -> list[str]:
        cpu = ["-cpu", "host,-arch-capabilities"] if self.accel == "kvm" else ["-cpu", "qemu64"]
        return [
            QEMU, "-name", "septa-bench-bare", "-machine", f"q35,accel={self.accel}", *cpu,
            "-m", str(self.memory_mib), "-smp", str(self.vcpus),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
            "-append", BARE_CMDLINE,
            "-drive", f"file={overlay},format=qcow2,if=none,id=root,cache=writeback,"
                      "discard=unmap",
            "-device", "virtio-blk-pci,drive=root",
            "-device", "virtio-serial-pci,id=vser0",
            "-chardev", f"file,id=console,path={console}",
            "-device", "virtconsole,bus=vser0.0,nr=0,chardev=console",
            "-chardev", f"socket,id=agent,path={agent},server=on,wait=off",
            "-device", f"virtserialport,bus=vser0.0,nr=1,chardev=agent,name={PORT_NAME}",
        ]

    def _prepare(self) -> tuple[Path, Path, Path]:
        self.runs += 1
        run_dir = self.workdir / f"bare-{self.runs}"
        run_dir.mkdir()
        overlay = run_dir / "root.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                        "-b", str(self.image.root), str(overlay)],
                       check=True, capture_output=True, timeout=60)
        return overlay, run_dir / "agent.sock", run_dir / "console.log"

    def boot(self) -> tuple[BareRun, subprocess.Popen[bytes]]:
        """Start one bare QEMU; return its timings once READY, and the running process."""
        overlay, agent, console = self._prepare()
        argv = self.command(overlay, agent, console)
        stderr = agent.parent / "qemu.stderr"
        with open(stderr, "wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                    start_new_session=True)
        self.procs.append(proc)
        deadline = start + BOOT_TIMEOUT
        try:
            sock = self._connect(proc, agent, deadline)
            with sock:
                hello, ready, uptime = self._read_until_ready(proc, sock, deadline)
        except h.BenchError as exc:
            self.stop(proc)
            tail = "\n".join(console.read_text(errors="replace").splitlines()[-15:]) \
                if console.exists() else "(no console log)"
            raise h.BenchError(f"{exc}\nQEMU stderr: {stderr.read_text(errors='replace')}"
                               f"\nconsole tail:\n{tail}") from None
        return BareRun(ready - start, hello - start, uptime), proc

    @staticmethod
    def _connect(proc: subprocess.Popen[bytes], path: Path, deadline: float) -> socket.socket:
        while True:
            if proc.poll() is not None:
                raise h.BenchError(f"bare QEMU exited with {proc.returncode} before its "
                                   "agent socket appeared")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                return sock
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
            if time.perf_counter() > deadline:
                raise h.BenchError(f"bare QEMU's agent socket {path} did not appear")
            time.sleep(0.002)

    @staticmethod
    def _read_until_ready(proc: subprocess.Popen[bytes], sock: socket.socket,
                          deadline: float) -> tuple[float, float, float]:
        decoder = FrameDecoder()
        hello = math.nan
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise h.BenchError(f"no READY from the bare guest's agent in {BOOT_TIMEOUT:.0f} s")
            sock.settimeout(min(remaining, 1.0))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if proc.poll() is not None:
                    raise h.BenchError(
                        f"bare QEMU exited with {proc.returncode} before READY") from None
                continue
            now = time.perf_counter()
            if not data:
                if proc.poll() is not None:
                    raise h.BenchError(f"bare QEMU exited with {proc.returncode} before READY")
                raise h.BenchError("the bare QEMU closed the agent socket before READY")
            for frame in decoder.feed(data):
                if frame.channel != 0:
                    continue
                if frame.type == FrameType.HELLO and math.isnan(hello):
                    hello = now
                elif frame.type == FrameType.READY:
                    uptime = float(frame.json().get("uptime", math.nan))
                    return hello, now, uptime

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)


# --- the measurements ---------------------------------------------------------------------

@dataclass
class Qube:
    name: str
    domain: str


@dataclass
class BootResults:
    septa: list[SeptaRun] = field(default_factory=list)
    bare: list[BareRun] = field(default_factory=list)
    tool_alone: list[float] = field(default_factory=list)
    busy: int = 0


def wait_for_quiet(limit: float) -> int:
    """Wait up to ``limit`` s until no other QEMU runs (the machine is shared and has few
    cores); the number still running."""
    deadline = time.monotonic() + limit
    while (others := len(qemu_pids())) and time.monotonic() < deadline:
        time.sleep(2)
    return others


@dataclass
class Guard:
    """Redoes a step when septad was stopped from outside while it ran (the machine is
    shared; another session may stop every septad): septad is started again on the same
    root, every qube of this run killed, and the step run again."""

    daemon: h.Septad
    prefix: str
    bare: BareQemu | None = None
    restarts: list[str] = field(default_factory=list)

    def run(self, what: str, step: Callable[[], T]) -> T:
        while True:
            try:
                return step()
            except h.BenchError as exc:
                try:  # a daemon told to stop closes its connections before it exits
                    status = self.daemon.proc.wait(15)
                except subprocess.TimeoutExpired:
                    raise exc from None
                if len(self.restarts) >= MAX_RESTARTS:
                    raise
                first = str(exc).splitlines()[0] if str(exc) else repr(exc)
                self.restarts.append(f"{what}: septad exit status {status}; {first[:160]}")
                print(f"note: septad stopped during {what} (exit status {status}, not by this "
                      "benchmark); starting it again and redoing that step", flush=True)
                self.recover()

    def _state(self, name: str) -> str:
        try:
            return tool(self.daemon, "qvm-ls", "--raw-data", "-O", "STATE", name).strip()
        except h.BenchError:
            return "?"

    def recover(self) -> None:
        if self.bare is not None:
            self.bare.stop_all()
        running = [name[len(self.prefix):] for name in domains(self.prefix)]
        h.restart_septad(self.daemon)
        if running:
            states = {name: self._state(name) for name in running}
            print("  still running after septad stopped: " + ", ".join(
                f"{name} (septad restarted sees it {state})" for name, state in states.items()),
                flush=True)
        with contextlib.suppress(h.BenchError):
            tool(self.daemon, "qvm-kill", "--all", timeout=120)
        leftovers = sweep_domains(self.prefix)
        if leftovers:
            print(f"  destroyed after qvm-kill --all: {', '.join(leftovers)}", flush=True)
        deadline = time.monotonic() + 30
        while any(p.name.startswith(self.prefix) for p in LIBVIRT_RUN.glob("*.pid")):
            if time.monotonic() > deadline:
                raise h.BenchError("domains of this run are still there 30 s after a kill")
            time.sleep(0.1)


def measure_boot(guard: Guard, qube: Qube, bare: BareQemu, repeat: int,
                 events: LifecycleEvents, quiet: float) -> BootResults:
    daemon = guard.daemon
    results = BootResults()
    print("warm-up (not counted) ...", flush=True)

    def warm_up() -> tuple[SeptaRun, BareRun]:
        first = septa_start(daemon, qube.name, qube.domain, events)
        septa_kill(daemon, qube.name, qube.domain)
        warm, proc = bare.boot()
        bare.stop(proc)
        return first, warm

    first, warm = guard.run("the warm-up", warm_up)
    print(f"warm-up: septa first start {first.total:.2f} s (formats the private volume), "
          f"bare {warm.total:.2f} s", flush=True)

    def repetition(order: Sequence[str]) -> tuple[SeptaRun, BareRun, float]:
        septa_run: SeptaRun | None = None
        bare_run: BareRun | None = None
        for which in order:
            if which == "septa":
                septa_run = septa_start(daemon, qube.name, qube.domain, events)
                septa_kill(daemon, qube.name, qube.domain)
            else:
                bare_run, proc = bare.boot()
                bare.stop(proc)
        alone = h.wall_time([str(h.VENV_BIN / "qvm-prefs"), qube.name, "memory"],
                            env=daemon.env)
        assert septa_run is not None and bare_run is not None
        return septa_run, bare_run, alone

    for rep in range(repeat):
        order = ["septa", "bare"] if rep % 2 == 0 else ["bare", "septa"]
        others = wait_for_quiet(quiet)
        results.busy += others > 0
        load = os.getloadavg()[0]
        s, b, alone = guard.run(f"repetition {rep + 1}", functools.partial(repetition, order))
        results.septa.append(s)
        results.bare.append(b)
        results.tool_alone.append(alone)
        to_qemu = f"{s.to_qemu:.2f}" if s.to_qemu is not None else "?"
        to_vcpus = f"{s.to_vcpus:.2f}" if s.to_vcpus is not None else "?"
        print(f"repetition {rep + 1}/{repeat} ({' first, '.join(order)} second; {others} "
              f"other QEMU running, load {load:.1f}): septa {s.total:.2f} s (QEMU forked at "
              f"+{to_qemu} s, vCPUs run at +{to_vcpus} s), bare {b.total:.2f} s "
              f"(guest uptime at READY {b.uptime:.2f} s)", flush=True)
    return results


def report_boot(results: BootResults, repeat: int) -> float:
    septa = [r.total for r in results.septa]
    bare = [r.total for r in results.bare]
    print()
    table = h.Table("cold start to agent READY", "median s", "(min..max)")
    table.add("septa: qvm-start (wall time)", f"{h.median(septa):.2f}", h.spread(septa, "{:.2f}"))
    table.add("bare qemu-system-x86_64: process start -> READY", f"{h.median(bare):.2f}",
              h.spread(bare, "{:.2f}"))
    table.add("ratio septa / bare (median of per-repetition ratios)",
              f"{h.paired_ratio(septa, bare):.3f}", "")
    table.add("ratio of the medians", f"{h.median(septa) / h.median(bare):.3f}", "")
    table.print()
    print(f"(medians of {repeat} repetitions, interleaved, after one warm-up boot of each; "
          f"{results.busy} of them began while other sessions' QEMU ran)\n")

    table = h.Table("breakdown (medians)", "s")
    to_qemu = [r.to_qemu for r in results.septa if r.to_qemu is not None]
    to_vcpus = [r.to_vcpus for r in results.septa if r.to_vcpus is not None]
    if to_qemu:
        table.add("septa: qvm-start spawned -> libvirtd forks QEMU", f"{h.median(to_qemu):.2f}")
    if to_qemu and len(to_vcpus) == len(to_qemu) == len(results.septa):
        setup = [(r.to_vcpus or 0.0) - (r.to_qemu or 0.0) for r in results.septa]
        rest = [r.total - (r.to_vcpus or 0.0) for r in results.septa]
        table.add("septa: QEMU forked -> libvirtd lets the vCPUs run (Started event)",
                  f"{h.median(setup):.2f}")
        table.add("septa: vCPUs run -> qvm-start exits (guest boot, READY, answer)",
                  f"{h.median(rest):.2f}")
        table.add("  the same minus bare process start -> READY",
                  f"{h.median(rest) - h.median(bare):+.2f}")
    elif len(to_qemu) == len(results.septa):
        rest = [r.total - (r.to_qemu or 0.0) for r in results.septa]
        table.add("septa: QEMU forked -> qvm-start exits (READY + answer)", f"{h.median(rest):.2f}")
    else:
        table.add("septa: QEMU process start not seen in every run", "?")
    table.add("client tool alone: qvm-prefs QUBE memory (startup + 1 call)",
              f"{h.median(results.tool_alone):.2f}")
    hello = [r.hello for r in results.bare]
    uptime = [r.uptime for r in results.bare]
    table.add("bare: process start -> agent HELLO", f"{h.median(hello):.2f}")
    table.add("bare: guest uptime at READY (/proc/uptime in the guest)", f"{h.median(uptime):.2f}")
    table.add("bare: process start -> guest kernel clock starts (READY - uptime)",
              f"{h.median([b.total - b.uptime for b in results.bare]):.2f}")
    table.print()
    return h.median(septa) / h.median(bare)


@dataclass
class Sample:
    label: str
    pid: int
    memory: QemuMemory


def start_concurrently(daemon: h.Septad, qubes: Sequence[Qube]) -> tuple[float, list[str]]:
    """One ``qvm-start`` per qube, all at once; the wall time and the failures."""
    start = time.perf_counter()
    procs = [(q, subprocess.Popen([str(h.VENV_BIN / "qvm-start"), q.name], env=daemon.env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE))
             for q in qubes]
    failures = []
    for qube, proc in procs:
        try:
            _, err = proc.communicate(timeout=TOOL_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0:
            failures.append(f"{qube.name}: {err.decode(errors='replace').strip()[-400:]}")
    return time.perf_counter() - start, failures


def measure_memory(daemon: h.Septad, qubes: Sequence[Qube], bare: BareQemu, memory_mib: int,
                   idle: float) -> tuple[list[Sample], Sample, dict[str, int], dict[str, int]]:
    before = meminfo()
    print(f"\nstarting {len(qubes)} AppVMs at once (one qvm-start each) ...", flush=True)
    elapsed, failures = start_concurrently(daemon, qubes)
    print(f"{len(qubes)} concurrent qvm-start: all done in {elapsed:.1f} s"
          + (f"; {len(failures)} failed" if failures else ""), flush=True)
    for failure in failures:
        print(f"  failed: {failure}")
    for qube in qubes:
        if domain_pid(qube.domain) is None:
            print(f"  retrying {qube.name} alone ...", flush=True)
            tool(daemon, "qvm-start", qube.name)
    run, proc = bare.boot()
    print(f"bare reference booted to READY in {run.total:.2f} s; idle for {idle:g} s ...",
          flush=True)
    time.sleep(idle)
    guest_kib = memory_mib * MIB
    samples = []
    for qube in qubes:
        pid = domain_pid(qube.domain)
        if pid is None:
            raise h.BenchError(f"{qube.name} is not running any more")
        samples.append(Sample(qube.name, pid, qemu_memory(pid, guest_kib)))
    reference = Sample("bare qemu (reference)", proc.pid, qemu_memory(proc.pid, guest_kib))
    after = meminfo()
    bare.stop(proc)
    return samples, reference, before, after


def report_memory(samples: Sequence[Sample], reference: Sample, before: dict[str, int],
                  after: dict[str, int], memory_mib: int, vcpus: int, idle: float) -> int:
    """Print the memory tables; the number of idle qubes that fit."""
    print()
    table = h.Table("idle qube", "QEMU pid", "RSS MiB", "PSS MiB", "guest RAM MiB",
                    "TCG code MiB", "rest MiB")
    for sample in [*samples, reference]:
        m = sample.memory
        table.add(sample.label, str(sample.pid), f"{m.rss / MIB:.0f}", f"{m.pss / MIB:.0f}",
                  f"{m.guest_rss / MIB:.0f}", f"{m.tcg_rss / MIB:.0f}",
                  f"{(m.rss - m.guest_rss - m.tcg_rss) / MIB:.0f}")
    table.print()
    print("(resident KiB from /proc/PID/smaps: guest RAM = the anonymous mapping of the guest's "
          "memory size, TCG code = anonymous rwx mappings\n(translation buffer, no tb-size "
          "set), rest = QEMU's heap, libraries, device state)")
    n = len(samples)
    rss = h.median([s.memory.rss for s in samples])
    pss = h.median([s.memory.pss for s in samples])
    own = h.median([s.memory.rss - s.memory.guest_rss for s in samples])
    drop = (before["MemAvailable"] - after["MemAvailable"] - reference.memory.pss) / n
    available = before["MemAvailable"]
    print()
    table = h.Table("host memory per idle qube", "value")
    table.add("configured memory of the qube (memory = maxmem, no balloon)",
              f"{memory_mib} MiB, {vcpus} vcpus")
    table.add(f"median RSS of the {n} qubes' QEMU processes", f"{rss / MIB:.0f} MiB")
    table.add(f"median PSS of the {n} qubes' QEMU processes", f"{pss / MIB:.0f} MiB")
    table.add("ratio RSS septa qube / bare QEMU",
              f"{rss / reference.memory.rss:.3f}")
    table.add(f"drop of MemAvailable per qube ({n} qubes, bare reference's PSS deducted)",
              f"{drop / MIB:.0f} MiB")
    table.add("MemTotal / MemAvailable with no qube running",
              f"{before['MemTotal'] / MIB:.0f} / {available / MIB:.0f} MiB")
    table.print()

    cost = max(rss, drop)
    rest = h.median([s.memory.rss - s.memory.guest_rss - s.memory.tcg_rss for s in samples])
    tcg_size = h.median([s.memory.tcg_size for s in samples])
    busy = memory_mib * MIB + own
    ceiling = memory_mib * MIB + tcg_size + rest
    print()
    table = h.Table("how many qubes fit in MemAvailable (extrapolated)", "qubes")
    table.add(f"idle: {cost / MIB:.0f} MiB each (the larger of median RSS and MemAvailable "
              "drop)", f"{int(available // cost)}")
    table.add(f"busy: all {memory_mib} MiB of guest RAM touched, TCG code as measured: "
              f"{busy / MIB:.0f} MiB each", f"{int(available // busy)}")
    table.add(f"ceiling: guest RAM and TCG code buffer ({tcg_size / MIB:.0f} MiB mapped) full: "
              f"{ceiling / MIB:.0f} MiB each", f"{int(available // ceiling)}")
    table.print()
    print(f"assumptions: MemAvailable with no qube of ours running ({available / MIB:.0f} MiB, "
          "other sessions' load as it was then) all goes to qubes: no reserve for the host,\n"
          "no swap, no KSM, no balloon (a qube keeps its memory); every qube costs what the "
          f"median one cost here after {idle:g} s idle and stays that size (RSS counts\n"
          "shared libraries in full, so it overstates by RSS-PSS). CPU is not counted: "
          f"{os.cpu_count()} cores under TCG; an idle qube takes ~1 % CPU, but starts share "
          "the\ncores and slow down under load.")
    return int(available // cost)


def domains(prefix: str) -> list[str]:
    """The running libvirt domains of this instance."""
    listing = subprocess.run([*VIRSH, "list", "--name"], capture_output=True, text=True,
                             timeout=60, check=False).stdout.split()
    return [name for name in listing if name.startswith(prefix)]


def sweep_domains(prefix: str) -> list[str]:
    """Destroy any libvirt domain of this instance that is still running."""
    leftovers = domains(prefix)
    for name in leftovers:
        subprocess.run([*VIRSH, "destroy", name], capture_output=True, timeout=60, check=False)
    return leftovers


def exists(daemon: h.Septad, name: str) -> bool:
    return subprocess.run([str(h.VENV_BIN / "qvm-check"), "-q", name], env=daemon.env,
                          capture_output=True, timeout=60, check=False).returncode == 0


def setup(daemon: h.Septad, names: Sequence[str]) -> tuple[int, int, str]:
    """Install the template and create the AppVMs (what is already there is kept)."""
    if not exists(daemon, TEMPLATE):
        start = time.perf_counter()
        tool(daemon, "qvm-template", "build", TEMPLATE, timeout=1800)
        print(f"qvm-template build {TEMPLATE}: {time.perf_counter() - start:.1f} s", flush=True)
    for name in names:
        if not exists(daemon, name):
            tool(daemon, "qvm-create", "-t", TEMPLATE, "-l", "red", name)
    memory = int(tool(daemon, "qvm-prefs", names[0], "memory"))
    vcpus = int(tool(daemon, "qvm-prefs", names[0], "vcpus"))
    kernelopts = tool(daemon, "qvm-prefs", names[0], "kernelopts").strip()
    return memory, vcpus, kernelopts


def prepare_image(root: Path) -> GuestImage:
    """The template build ``qvm-template build`` just installed, linked under ``root``."""
    try:
        build = cached_build(RECIPE)
    except BuildError as exc:
        raise h.BenchError(f"the template build failed: {exc}") from exc
    image = link_image(build, root / "image")
    accel = choose_accel(image.kernel)
    print(f"template build: {build.directory} (kernel {build.kernel_version}); accel {accel} "
          "(septa's cached decision for this kernel and QEMU)", flush=True)
    if recipe_hash(RECIPE) != image.recipe_hash:
        print("note: the template's sources changed during the setup (someone is editing "
              "the agent?): septa's template may differ from the reference's image")
    return image


def run(args: argparse.Namespace) -> int:
    mem = meminfo()
    h.print_machine_facts("Qube cold start and idle memory: septa vs. bare QEMU", [
        ("memory", f"MemTotal {mem['MemTotal'] / MIB:.0f} MiB, MemAvailable "
                   f"{mem['MemAvailable'] / MIB:.0f} MiB, swap {mem['SwapTotal'] / MIB:.0f} MiB,"
                   f" memory cgroup limit: {memory_cgroup_limit()}"),
        ("qemu", (_output_lines([QEMU, "--version"]) or ["unknown"])[0]),
        ("libvirt", "; ".join(line for line in _output_lines([*VIRSH, "version", "--daemon"])
                              if line.startswith("Running")) or "unknown"),
        ("other QEMU processes", f"{len(qemu_pids())} running at start (other sessions)"),
        ("settings", f"{args.repeat} repetitions, {args.qubes} idle qubes + 1 bare, "
                     f"{args.idle:g} s idle, up to {args.quiet:g} s wait for a quiet host"),
    ])
    names = [f"boot{i}" for i in range(args.qubes)]
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(h.temp_root("septa-bench-boot-", "/var/tmp", 0o755))
        prefix = instance_prefix(root)
        # registered before septad starts, so it runs after septad has stopped
        stack.callback(_final_sweep, prefix)
        daemon = stack.enter_context(h.septad(root, new_session=True))
        events = LifecycleEvents()
        stack.callback(events.close)
        bare: BareQemu | None = None
        guard = Guard(daemon, prefix)
        try:
            memory, vcpus, kernelopts = guard.run("the setup", lambda: setup(daemon, names))
            image = prepare_image(root)
            print(f"qube: {memory} MiB, {vcpus} vcpus, kernelopts {kernelopts!r}; "
                  f"bare reference: same memory/vcpus/accel, cmdline {BARE_CMDLINE!r}",
                  flush=True)
            bare = guard.bare = BareQemu(image, root, memory, vcpus, choose_accel(image.kernel))
            print("bare reference: " + " ".join(
                bare.command(root / "bare-N" / "root.qcow2", root / "bare-N" / "agent.sock",
                             root / "bare-N" / "console.log")), flush=True)
            qubes = [Qube(name, prefix + name) for name in names]
            results = measure_boot(guard, qubes[0], bare, args.repeat, events, args.quiet)
            ratio = report_boot(results, args.repeat)
            samples, reference, before, after = guard.run(
                "the memory phase",
                lambda: measure_memory(daemon, qubes, bare, memory, args.idle))
            fit = report_memory(samples, reference, before, after, memory, vcpus, args.idle)
            septa = h.median([r.total for r in results.septa])
            plain = h.median([r.total for r in results.bare])
            rss = h.median([s.memory.rss for s in samples]) / MIB
            print(f"\nsummary: cold start to agent READY septa {septa:.2f} s vs bare QEMU "
                  f"{plain:.2f} s (septa/bare {ratio:.3f}); idle qube ({memory} MiB) "
                  f"{rss:.0f} MiB host RSS; ~{fit} idle qubes fit in MemAvailable", flush=True)
        except h.BenchError:
            status = daemon.proc.poll()
            if status is not None:
                print(f"septad is gone (exit status {status}"
                      + (": a signal from outside this benchmark)" if status < 0 else ")"),
                      file=sys.stderr)
            print(f"septad log tail:\n{h.log_tail(daemon.log, 25)}", file=sys.stderr)
            raise
        finally:
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                if bare is not None:
                    bare.stop_all()
                with contextlib.suppress(h.BenchError):
                    tool(daemon, "qvm-kill", "--all", timeout=120)
            finally:
                signal.signal(signal.SIGINT, previous)
        log_lines = daemon.log.read_text(errors="replace").splitlines()
    if guard.restarts:
        print(f"\nseptad was stopped from outside {len(guard.restarts)} time(s) and started "
              "again; the steps it broke were redone:")
        for restart in guard.restarts:
            print(f"  {restart}")
    h.print_log_problems(log_lines)
    return 0


def _final_sweep(prefix: str) -> None:
    leftovers = sweep_domains(prefix)
    if leftovers:
        print(f"note: destroyed domains septad left running: {', '.join(leftovers)}",
              file=sys.stderr)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Qube cold start and idle memory under septad, against bare QEMU.")
    parser.add_argument("--repeat", type=int, default=5, help="timed boots of each (5)")
    parser.add_argument("--qubes", type=int, default=4,
                        help=f"idle AppVMs for the memory figure (4, at most {MAX_AT_ONCE - 1})")
    parser.add_argument("--idle", type=float, default=20.0,
                        help="seconds the qubes stay idle before their memory is read (20)")
    parser.add_argument("--quiet", type=float, default=60.0,
                        help="before each repetition, wait up to this many seconds for other "
                             "sessions' QEMU processes to end (60)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or not 1 <= args.qubes <= MAX_AT_ONCE - 1 or args.idle < 0:
        parser.error(f"need --repeat >= 1, 1 <= --qubes <= {MAX_AT_ONCE - 1}, --idle >= 0")
    return args


def guarded_run(name: str, run: Callable[[argparse.Namespace], int],
                args: argparse.Namespace) -> int:
    """Run a benchmark that boots qubes: root and QEMU checked first; SIGTERM and Ctrl-C
    unwind through its cleanup; a BenchError is one line and exit code 1."""
    if os.geteuid() != 0:
        print(f"{name} needs root (libvirt's system instance)", file=sys.stderr)
        return 2
    if shutil.which(QEMU) is None:
        print(f"{QEMU} not found", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        return run(args)
    except h.BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return guarded_run("boot.py", run, _parse(argv))


if __name__ == "__main__":
    sys.exit(main())
