"""Benchmark of qrexec under septad: call latency, data throughput, policy, disposables.

It starts a private ``septad`` (temporary ``SEPTA_ROOT`` under /var/tmp, mode 0755),
installs the ``debian-12`` template (``qvm-template build``, normally from the cache),
creates and starts one AppVM and creates a disposable template, then measures:

1. Call latency of ``true`` into the running qube: the median of sequential calls through
   the Python API that ``qvm-run`` uses (:func:`septa.client.qrexec.run_call`,
   ``qubes.VMExec+true``), the median wall time of whole ``qvm-run -p --no-shell QUBE true``
   processes, and calls/s with 8 threads calling at once (median of 3 runs).
2. Throughput of a 1 GiB pipe dom0 -> qube (``qubes.VMExec`` running ``wc -c``, which
   also checks the length), qube -> dom0 (``head -c 1073741824 /dev/zero``) and qube ->
   qube (``head -c | qrexec-client-vm OTHER qubes.VMExec+wc+--c`` in the first qube,
   relayed by septad under an ``allow`` rule), MB/s, median of 3; against the same bytes
   through a plain virtio-serial port of a bare QEMU of the same guest
   (:mod:`raw_channel`: no framing, no relay), a ``head | cat`` pipe on the host (a
   memory copy) and the published Qubes figures (850 MB/s qube -> dom0, 317 MB/s dom0
   -> qube).
3. Policy evaluations/s with a generated 1,000-line policy (4.1+ format) for a request
   that matches the last line and one that matches the first, median of 5; against the
   published 4.0 figure (about 300 ms per call).
4. Disposables: ``qvm-run --dispvm=DVM -p --no-shell echo running``, from the start of
   the process to the command's output (the command running) and to the exit (the
   disposable killed and removed), median of 3, cold and from a preloaded disposable
   (``preload-dispvm-max`` = 1 on DVM; each run waits until the pool is full again);
   against the published 8.5 s cold and 2.9 s preloaded.

Qubes run under whatever septa chooses (KVM or TCG); the machine facts say which.
Everything started is stopped and the root removed on success, failure or Ctrl-C.

Usage: ``.venv/bin/python bench/qrexec.py [--calls N] [--qvm-run N] [--mib M]``
(as root, with libvirtd running).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import _harness as h
import boot
import raw_channel
from septa.client.qrexec import CallRequest, run_call
from septa.hypervisor.accel import choose_accel
from septa.hypervisor.libvirt_engine import instance_prefix
from septa.qrexec.policy import Allow, Policy, Request, SystemInfo

TEMPLATE = boot.TEMPLATE
QUBE = "qbench"
PEER = "qbench-peer"
DVM = "dvm"
THREADS = 8
PARALLEL_RUNS = 3
THROUGHPUT_RUNS = 3
POLICY_RUNS = 5
POLICY_LINES = 1000
POLICY_RUN_SECONDS = 0.5
DISPVM_RUNS = 3
CHUNK = 65536
PUBLISHED_QUBE_TO_DOM0 = 850.0  # MB/s
PUBLISHED_DOM0_TO_QUBE = 317.0  # MB/s
PUBLISHED_POLICY_SECONDS = 0.300  # per call, Qubes 4.0
PUBLISHED_DISPVM_COLD = 8.5  # seconds
PUBLISHED_DISPVM_POOL = 2.9  # seconds


# --- calls --------------------------------------------------------------------------------

def call_true(target: str) -> None:
    """One ``qubes.VMExec+true`` call; :class:`BenchError` unless it exits 0."""
    status = run_call(CallRequest(target, service="qubes.VMExec", arg="true"))
    if status != 0:
        raise h.BenchError(f"qubes.VMExec+true in {target} exited with {status}")


def sequential_latency(target: str, count: int) -> list[float]:
    """Seconds of each of ``count`` calls, one after the other."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call_true(target)
        times.append(time.perf_counter() - start)
    return times


def parallel_rate(target: str, calls: int, threads: int) -> float:
    """Calls/s when ``threads`` threads share ``calls`` calls."""
    remaining = [calls]
    lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def worker() -> None:
        barrier.wait()
        while True:
            with lock:
                if remaining[0] <= 0 or errors:
                    return
                remaining[0] -= 1
            try:
                call_true(target)
            except BaseException as exc:  # noqa: BLE001 - reported in the main thread
                errors.append(exc)
                return

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for worker_thread in workers:
        worker_thread.start()
    start = time.perf_counter()
    barrier.wait()
    for worker_thread in workers:
        worker_thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise h.BenchError(f"{len(errors)} parallel call(s) failed; first: {errors[0]!r}")
    return calls / elapsed


# --- throughput ---------------------------------------------------------------------------

class Zeros:
    """A stdin of ``size`` zero bytes, read in chunks (``read1`` like a buffered file)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = bytes(CHUNK)

    def read1(self, n: int = CHUNK) -> bytes:
        take = min(n, CHUNK, self.left)
        self.left -= take
        return self.block if take == CHUNK else self.block[:take]

    read = read1


def _into_wc(what: str, request: CallRequest, size: int, stdin: Zeros | None = None
             ) -> float:
    """Seconds of ``request``, a call whose output is a ``wc -c`` that must say ``size``."""
    out: list[bytes] = []
    start = time.perf_counter()
    status = run_call(request, stdin=stdin, stdout=out.append)
    elapsed = time.perf_counter() - start
    counted = b"".join(out).strip()
    if status != 0 or counted != str(size).encode():
        raise h.BenchError(f"{what}: wc -c said {counted!r} (status {status}), "
                           f"expected {size}")
    return elapsed


def dom0_to_qube(target: str, size: int) -> float:
    """Seconds to push ``size`` bytes into ``wc -c`` in the qube (the count is checked)."""
    return _into_wc("dom0 -> qube", CallRequest(target, service="qubes.VMExec", arg="wc+--c"),
                    size, Zeros(size))


def qube_to_dom0(target: str, size: int) -> float:
    """Seconds to read ``size`` bytes of ``head -c SIZE /dev/zero`` from the qube."""
    got = [0]

    def count(data: bytes) -> None:
        got[0] += len(data)

    start = time.perf_counter()
    status = run_call(CallRequest(target, service="qubes.VMExec",
                                  arg=f"head+--c+{size}+-2Fdev-2Fzero"), stdout=count)
    elapsed = time.perf_counter() - start
    if status != 0 or got[0] != size:
        raise h.BenchError(f"qube -> dom0: got {got[0]} bytes (status {status}), "
                           f"expected {size}")
    return elapsed


def qube_to_qube(source: str, target: str, size: int) -> float:
    """Seconds for ``size`` bytes from ``source`` into ``wc -c`` in ``target``."""
    return _into_wc("qube -> qube", CallRequest(source, command=(
        f"head -c {size} /dev/zero | qrexec-client-vm {target} qubes.VMExec+wc+--c")), size)


def host_pipe(size: int) -> float:
    """Seconds for ``head -c SIZE /dev/zero | cat > /dev/null`` on the host."""
    return h.wall_time(["sh", "-c", f"head -c {size} /dev/zero | cat > /dev/null"])


# --- policy -------------------------------------------------------------------------------

def generate_policy(lines: int) -> str:
    """A policy of ``lines`` rules for ``qubes.Test`` (or ``*``): the first allows
    work -> personal, the last allows anything; none in between matches
    untrusted -> personal, so that request is decided by the last line."""
    rules = ["qubes.Test * work personal allow"]
    for i in range(2, lines):
        kind = i % 4
        if kind == 0:
            rules.append(f"qubes.Test * @tag:tag{i} @anyvm deny")
        elif kind == 1:
            rules.append(f"qubes.Test +arg{i} @anyvm @anyvm allow")
        elif kind == 2:
            rules.append(f"* * vm{i} @default allow target=personal")
        else:
            rules.append(f"qubes.Test * @type:TemplateVM vm{i} ask default_target=vm{i}")
    rules.append("qubes.Test * @anyvm @anyvm allow")
    return "\n".join(rules) + "\n"


def policy_system_info() -> SystemInfo:
    domains: dict[str, dict[str, object]] = {
        "dom0": {"type": "AdminVM", "power_state": "Running"},
        "work": {"type": "AppVM", "tags": ["work"]},
        "personal": {"type": "AppVM"},
        "untrusted": {"type": "AppVM"},
        TEMPLATE: {"type": "TemplateVM"},
        DVM: {"type": "AppVM", "template_for_dispvms": True},
    }
    domains.update({f"app{i}": {"type": "AppVM", "tags": [f"t{i}"]} for i in range(50)})
    return SystemInfo.from_json({"domains": domains})


def evaluations_per_second(policy: Policy, request: Request, info: SystemInfo,
                           expected_line: int) -> float:
    """Evaluations/s of ``request`` in a loop of about POLICY_RUN_SECONDS."""
    decision = policy.evaluate(request, info)
    if not isinstance(decision, Allow) or not (decision.rule or "").endswith(f":{expected_line}"):
        raise h.BenchError(f"{request.source} -> {request.target}: {decision!r}, expected an "
                           f"allow by line {expected_line}")
    batch = 100
    done = 0
    start = time.perf_counter()
    deadline = start + POLICY_RUN_SECONDS
    while time.perf_counter() < deadline:
        for _ in range(batch):
            policy.evaluate(request, info)
        done += batch
    return done / (time.perf_counter() - start)


def measure_policy() -> None:
    text = generate_policy(POLICY_LINES)
    parse_times = []
    policy = None
    for _ in range(POLICY_RUNS):
        start = time.perf_counter()
        policy = Policy.from_text(text, "/etc/qubes/policy.d/30-bench.policy")
        parse_times.append(time.perf_counter() - start)
    assert policy is not None and len(policy) == POLICY_LINES
    info = policy_system_info()
    print(f"\n-- 3. policy evaluation: {POLICY_LINES}-line policy (4.1+ format), "
          f"median of {POLICY_RUNS} runs of ~{POLICY_RUN_SECONDS:g} s --")
    table = h.Table("request", "evals/s", "us/eval", "4.0 published / septa")
    cases = [("untrusted -> personal (last line)", "untrusted", POLICY_LINES),
             ("work -> personal (first line)", "work", 1)]
    for label, source, line in cases:
        request = Request.parse(source, "personal", "qubes.Test+x")
        rates = [evaluations_per_second(policy, request, info, line) for _ in range(POLICY_RUNS)]
        rate = h.median(rates)
        table.add(label, f"{rate:,.0f}", f"{1e6 / rate:.1f}",
                  f"{PUBLISHED_POLICY_SECONDS * rate:,.0f}x")
    parse = h.median(parse_times)
    table.add("parse the policy (Policy.from_text)", f"{1 / parse:,.1f}",
              f"{parse * 1e6:,.0f}", f"{PUBLISHED_POLICY_SECONDS / parse:,.0f}x")
    table.print()
    print(f"published: ~{PUBLISHED_POLICY_SECONDS * 1000:.0f} ms per call in Qubes 4.0 "
          "(a process per call that parses the policy); the last row is septa's equivalent "
          "cold cost (parsing only). Repeated evaluations reuse "
          "the policy's per-call-name rule index.", flush=True)


# --- the run ------------------------------------------------------------------------------

def setup(daemon: h.Septad) -> None:
    """Template, the AppVM (started) and the disposable template."""
    start = time.perf_counter()
    if not boot.exists(daemon, TEMPLATE):
        boot.tool(daemon, "qvm-template", "build", TEMPLATE, timeout=1800)
    print(f"qvm-template build {TEMPLATE}: {time.perf_counter() - start:.1f} s", flush=True)
    if not boot.exists(daemon, QUBE):
        boot.tool(daemon, "qvm-create", "-t", TEMPLATE, "-l", "red", QUBE)
    if not boot.exists(daemon, PEER):
        boot.tool(daemon, "qvm-create", "-t", TEMPLATE, "-l", "red", PEER)
    policy = daemon.root / "etc/qubes/policy.d/30-bench.policy"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(f"qubes.VMExec * {QUBE} {PEER} allow\n")
    if not boot.exists(daemon, DVM):
        boot.tool(daemon, "qvm-create", "-t", TEMPLATE, "-l", "red", "--prop",
                  "template_for_dispvms=True", DVM)
    start = time.perf_counter()
    boot.tool(daemon, "qvm-start", QUBE, timeout=300)
    print(f"qvm-start {QUBE}: {time.perf_counter() - start:.1f} s", flush=True)
    boot.tool(daemon, "qvm-start", PEER, timeout=300)
    memory = boot.tool(daemon, "qvm-prefs", QUBE, "memory").strip()
    vcpus = boot.tool(daemon, "qvm-prefs", QUBE, "vcpus").strip()
    print(f"qube {QUBE}: {memory} MiB, {vcpus} vcpus; disposable template {DVM}", flush=True)


def measure_latency(daemon: h.Septad, calls: int, processes: int) -> None:
    call_true(QUBE)  # warm-up (first connection, service files cached in the guest)
    api = sequential_latency(QUBE, calls)
    qvm_run = [str(h.VENV_BIN / "qvm-run"), "-p", "--no-shell", QUBE, "true"]
    walls = [h.wall_time(qvm_run, env=daemon.env) for _ in range(processes)]
    rates = [parallel_rate(QUBE, calls, THREADS) for _ in range(PARALLEL_RUNS)]
    print(f"\n-- 1. call latency of `true` in running qube {QUBE} --")
    table = h.Table("how", "calls", "median ms", "min ms", "max ms", "calls/s")
    table.add("run_call (API used by qvm-run), sequential", str(calls),
              f"{h.median(api) * 1000:.1f}", f"{min(api) * 1000:.1f}",
              f"{max(api) * 1000:.1f}", f"{1 / h.median(api):.1f}")
    table.add("qvm-run -p --no-shell QUBE true (process)", str(processes),
              f"{h.median(walls) * 1000:.1f}", f"{min(walls) * 1000:.1f}",
              f"{max(walls) * 1000:.1f}", f"{1 / h.median(walls):.1f}")
    table.add(f"run_call, {THREADS} threads, median of {PARALLEL_RUNS}", str(calls),
              f"{THREADS * 1000 / h.median(rates):.1f}", "", "", f"{h.median(rates):.1f}")
    table.print()
    print(f"(parallel runs: {', '.join(f'{r:.1f}' for r in rates)} calls/s; "
          f"the {THREADS}-thread 'median ms' is {THREADS} / rate, the mean time per call "
          "as each thread sees it)", flush=True)


def measure_throughput(daemon: h.Septad, size: int) -> None:
    mb = size / 1e6
    results: list[tuple[str, list[float], float | None]] = []
    runs: list[tuple[str, Callable[[], float], float | None]] = [
        ("dom0 -> qube (wc -c in the qube)", lambda: dom0_to_qube(QUBE, size),
         PUBLISHED_DOM0_TO_QUBE),
        ("qube -> dom0 (head -c /dev/zero)", lambda: qube_to_dom0(QUBE, size),
         PUBLISHED_QUBE_TO_DOM0),
        ("qube -> qube (relayed by dom0)", lambda: qube_to_qube(QUBE, PEER, size), None)]
    for label, action, published in runs:
        results.append((label, [mb / action() for _ in range(THROUGHPUT_RUNS)], published))
    raw = raw_reference(daemon, size)
    results.append(("raw virtio-serial port: host -> guest",
                    [mb / t for t in raw.to_guest], None))
    results.append(("raw virtio-serial port: guest -> host",
                    [mb / t for t in raw.from_guest], None))
    results.append(("host: head -c | cat > /dev/null",
                    [mb / host_pipe(size) for _ in range(THROUGHPUT_RUNS)], None))
    raw_in, raw_out = h.median(results[3][1]), h.median(results[4][1])
    host = h.median(results[-1][1])
    reference = {0: raw_in, 1: raw_out, 2: min(raw_in, raw_out)}
    print(f"\n-- 2. throughput of a {size // 2**20} MiB pipe, MB/s (10^6 B/s), "
          f"median of {THROUGHPUT_RUNS} --")
    table = h.Table("direction", "MB/s", "runs", "septa/raw port", "published Qubes",
                    "septa/published", "/host pipe")
    for index, (label, rates, published) in enumerate(results):
        rate = h.median(rates)
        table.add(label, f"{rate:,.0f}", " ".join(f"{r:,.0f}" for r in rates),
                  f"{rate / reference[index]:.2f}" if index in reference else "",
                  "" if published is None else f"{published:,.0f}",
                  "" if published is None else f"{rate / published:.2f}",
                  f"{rate / host:.3f}")
    table.print()
    print("septa/raw port: against the same direction through a plain virtio-serial port "
          "(qube -> qube: against the slower direction); published: Qubes 4.x on Xen "
          "(other hardware; for scale only)", flush=True)


def raw_reference(daemon: h.Septad, size: int) -> raw_channel.RawRates:
    """The raw port's rates in a bare QEMU with the qube's memory, vcpus and accelerator."""
    image = boot.prepare_image(daemon.root)
    memory = int(boot.tool(daemon, "qvm-prefs", QUBE, "memory"))
    vcpus = int(boot.tool(daemon, "qvm-prefs", QUBE, "vcpus"))
    workdir = daemon.root / "raw-reference"
    workdir.mkdir(exist_ok=True)
    return raw_channel.measure(image, workdir, memory, vcpus, choose_accel(image.kernel),
                               size, THROUGHPUT_RUNS)


def dispvm_run(daemon: h.Septad) -> tuple[float, float]:
    """Seconds from spawning ``qvm-run --dispvm`` to the command's output, and to its exit."""
    argv = [str(h.VENV_BIN / "qvm-run"), f"--dispvm={DVM}", "-p", "--no-shell", "echo",
            "running"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=daemon.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    running = time.perf_counter() - start
    proc.stdout.read()
    err = proc.stderr.read()
    status = proc.wait()
    total = time.perf_counter() - start
    if status != 0 or line != b"running\n":
        raise h.BenchError(f"qvm-run --dispvm exited with {status}, output {line!r}: "
                           f"{err.decode(errors='replace')}")
    return running, total


def preloaded(daemon: h.Septad) -> list[str]:
    result = subprocess.run([str(h.VENV_BIN / "qvm-features"), DVM, "preload-dispvm"],
                            env=daemon.env, capture_output=True, text=True, check=False)
    return result.stdout.split() if result.returncode == 0 else []


def wait_preloaded(daemon: h.Septad, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not preloaded(daemon):
        if time.monotonic() > deadline:
            raise h.BenchError(f"no preloaded disposable of {DVM} within {timeout:.0f} s")
        time.sleep(0.5)


def measure_dispvm(daemon: h.Septad) -> None:
    cold = [dispvm_run(daemon) for _ in range(DISPVM_RUNS)]
    boot.tool(daemon, "qvm-features", DVM, "preload-dispvm-max", "1")
    warm = []
    for _ in range(DISPVM_RUNS):
        wait_preloaded(daemon)
        warm.append(dispvm_run(daemon))
    boot.tool(daemon, "qvm-features", "--unset", DVM, "preload-dispvm-max")
    print(f"\n-- 4. disposable: qvm-run --dispvm={DVM} -p --no-shell echo running, "
          f"median of {DISPVM_RUNS} --")
    table = h.Table("what", "to running s", "runs s", "published s", "septa/published",
                    "to exit s")
    for label, runs, published in (("cold (create + boot + call)", cold, PUBLISHED_DISPVM_COLD),
                                   ("preloaded (taken + unpaused + call)", warm,
                                    PUBLISHED_DISPVM_POOL)):
        running = [r for r, _ in runs]
        table.add(label, f"{h.median(running):.2f}", " ".join(f"{t:.2f}" for t in running),
                  f"{published:g}", f"{h.median(running) / published:.2f}",
                  f"{h.median([t for _, t in runs]):.2f}")
    table.print()
    print(f"published: Qubes 4.x on Xen, {PUBLISHED_DISPVM_COLD:g} s cold and "
          f"{PUBLISHED_DISPVM_POOL:g} s preloaded, start to command running; 'to exit' "
          "adds the disposable's kill and removal", flush=True)


def qube_host_facts() -> list[tuple[str, str]]:
    """Machine facts of a benchmark that boots qubes: memory, QEMU, KVM, other QEMUs."""
    mem = boot.meminfo()
    return [
        ("memory", f"MemTotal {mem['MemTotal'] / 1024:.0f} MiB, MemAvailable "
                   f"{mem['MemAvailable'] / 1024:.0f} MiB"),
        ("qemu", (boot._output_lines([boot.QEMU, "--version"]) or ["unknown"])[0]),
        ("kvm", "/dev/kvm present (septa may still choose TCG: see accel below)"
                if Path("/dev/kvm").exists() else "no /dev/kvm (TCG)"),
        ("other QEMU processes", f"{len(boot.qemu_pids())} running at start (other sessions)"),
    ]


def run(args: argparse.Namespace) -> int:
    size = args.mib * 2**20
    h.print_machine_facts("qrexec: call latency, throughput, policy, disposables", [
        *qube_host_facts(),
        ("settings", f"{args.calls} calls, {args.qvm_run} qvm-run processes, "
                     f"{THREADS} threads, {args.mib} MiB pipes"),
    ])
    # the policy engine needs no qube: measure it first, on a quiet process
    measure_policy()
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(h.temp_root("septa-bench-qrexec-", "/var/tmp", 0o755))
        prefix = instance_prefix(root)
        stack.callback(_final_sweep, prefix)  # runs after septad has stopped
        daemon = stack.enter_context(h.septad(root, new_session=True))
        os.environ["SEPTA_ROOT"] = str(root)  # for run_call (septa.paths.current())
        stack.callback(_forget_root)
        stack.callback(_kill_all, daemon)
        try:
            print(f"\nsetup (SEPTA_ROOT={root}):", flush=True)
            setup(daemon)
            accel = _accel(prefix + QUBE)
            print(f"accel of {QUBE}: {accel}", flush=True)
            measure_latency(daemon, args.calls, args.qvm_run)
            measure_throughput(daemon, size)
            measure_dispvm(daemon)
        except h.BenchError:
            print(f"septad log tail:\n{h.log_tail(daemon.log, 25)}", file=sys.stderr)
            raise
        log_lines = daemon.log.read_text(errors="replace").splitlines()
    h.print_log_problems(log_lines)
    return 0


def _forget_root() -> None:
    os.environ.pop("SEPTA_ROOT", None)


def _accel(domain: str) -> str:
    """The accelerator of a running libvirt domain (from its XML)."""
    xml = subprocess.run([*boot.VIRSH, "dumpxml", domain], capture_output=True, text=True,
                         timeout=60, check=False).stdout
    if "type='kvm'" in xml or 'type="kvm"' in xml:
        return "kvm"
    if "type='qemu'" in xml or 'type="qemu"' in xml:
        return "tcg"
    return "unknown"


def _kill_all(daemon: h.Septad) -> None:
    """Stop every qube (Ctrl-C ignored meanwhile, so the cleanup finishes)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with contextlib.suppress(h.BenchError):
            boot.tool(daemon, "qvm-kill", "--all", timeout=120)
    finally:
        signal.signal(signal.SIGINT, previous)


def _final_sweep(prefix: str) -> None:
    leftovers = boot.sweep_domains(prefix)
    if leftovers:
        print(f"note: destroyed domains septad left running: {', '.join(leftovers)}",
              file=sys.stderr)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="qrexec under septad: latency, throughput, policy, disposables.")
    parser.add_argument("--calls", type=int, default=100,
                        help="sequential API calls, and calls per parallel run (100)")
    parser.add_argument("--qvm-run", type=int, default=20, help="qvm-run processes (20)")
    parser.add_argument("--mib", type=int, default=1024, help="MiB per pipe (1024)")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.qvm_run < 1 or args.mib < 1:
        parser.error("--calls, --qvm-run and --mib must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return boot.guarded_run("qrexec.py", run, _parse(argv))


if __name__ == "__main__":
    sys.exit(main())
