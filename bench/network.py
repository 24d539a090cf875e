"""TCP throughput and latency of an app qube behind sys-firewall and sys-net, against the
same stream from a qube straight on the uplink.

It starts a private ``septad`` (temporary ``SEPTA_ROOT`` under /var/tmp, mode 0755),
installs the ``debian-12`` template (``qvm-template build``, normally from the cache) and
creates, from it:

- ``bnet``: ``provides_network``, feature ``uplink`` = ``slirp``, no netvm (sys-net);
- ``bfw``: ``provides_network``, netvm ``bnet`` (sys-firewall: nftables firewall, NAT);
- ``bapp``: netvm ``bfw``; its stream goes bapp -> bfw -> bnet -> slirp -> host, over
  QEMU ``-netdev stream`` unix-socket links hot-plugged through QMP;
- ``bdirect`` (the reference): feature ``uplink`` = ``slirp``, no netvm, not a netvm; its
  stream goes bdirect -> slirp -> host.

Slirp maps 10.0.2.2 to the host's loopback, where this process listens. Measured, for
``bapp`` and ``bdirect`` in the same run, interleaved (the order alternates from one
repetition to the next), median of ``--repeat``:

1. Upload: ``head -c N /dev/zero | socat -u - TCP:10.0.2.2:PORT`` in the qube into a sink
   thread here, MB/s (10^6 B/s) from the first to the last byte received; the byte count
   is checked.
2. Download: a source thread here sends N bytes, then waits for the qube to close;
   ``socat -u TCP:10.0.2.2:PORT - | wc -c`` in the qube (the count is checked); MB/s from
   the accept to the qube's close.
3. Latency: a small Python client in the qube makes ``--rtts`` one-byte round trips on ONE
   TCP connection (TCP_NODELAY on both ends) to an echo server here and prints their
   median (``time.perf_counter``); before that it times 20 TCP connects (SYN to
   established) and prints their median.

One untimed warm-up transfer per qube comes first. The figures are the ratios
app-through-firewall / direct-on-uplink: of the two medians, and the median of the ratios
of the runs made side by side (less sensitive to other sessions' load drifting). Every
qube runs whatever accelerator septa chose (printed; on this project's machines TCG,
where each packet costs CPU time in every emulated qube on the path, and the app's path
runs three of them on the same cores).
Everything started is stopped and the root removed on success, failure or Ctrl-C.

Usage: ``.venv/bin/python bench/network.py [--mib M] [--repeat R] [--rtts N]``
(as root, with libvirtd running).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TypeVar

import _harness as h
import boot
import qrexec
from septa.hypervisor.libvirt_engine import instance_prefix

TEMPLATE = boot.TEMPLATE
NET, FIREWALL, APP, DIRECT = "bnet", "bfw", "bapp", "bdirect"
PATHS = ((APP, f"{APP} -> {FIREWALL} -> {NET} -> slirp"), (DIRECT, f"{DIRECT} -> slirp"))
HOST_FROM_QUBES = "10.0.2.2"
CONNECTS = 20
CHUNK = 1 << 20
TRANSFER_TIMEOUT = 600.0
WARMUP = 4 << 20
T = TypeVar("T")

# run in the qube as ``python3 SCRIPT HOST PORT COUNT``: "median rtt s, median connect s"
_LATENCY_CLIENT = f"""
import socket, statistics, sys, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
connects = []
for _ in range({CONNECTS}):
    start = time.perf_counter()
    conn = socket.create_connection((host, port))
    connects.append(time.perf_counter() - start)
    conn.close()
conn = socket.create_connection((host, port))
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
rtts = []
for index in range(count + 10):
    start = time.perf_counter()
    conn.sendall(b"x")
    if conn.recv(1) != b"x":
        sys.exit("echo lost")
    if index >= 10:
        rtts.append(time.perf_counter() - start)
conn.close()
print(statistics.median(rtts), statistics.median(connects))
"""


# --- the host's ends --------------------------------------------------------------------

def _sink(conn: socket.socket) -> tuple[int, float]:
    """Read to EOF: (bytes, seconds from the first to the last byte)."""
    buffer = bytearray(CHUNK)
    total, first, last = 0, 0.0, 0.0
    while count := conn.recv_into(buffer):
        last = time.perf_counter()
        if total == 0:
            first = last
        total += count
    return total, last - first


def _source(size: int) -> Callable[[socket.socket], tuple[int, float]]:
    """Send ``size`` zero bytes, then wait for the peer's close: (size, seconds)."""
    def send(conn: socket.socket) -> tuple[int, float]:
        block = bytes(CHUNK)
        start = time.perf_counter()
        for offset in range(0, size, CHUNK):
            conn.sendall(block[:min(CHUNK, size - offset)])
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(65536):
            pass
        return size, time.perf_counter() - start
    return send


@contextlib.contextmanager
def one_connection(handle: Callable[[socket.socket], tuple[int, float]]
                   ) -> Iterator[tuple[int, Future[tuple[int, float]]]]:
    """A listener on 127.0.0.1 (its port) whose first connection ``handle`` serves in a
    thread (the future's result)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TRANSFER_TIMEOUT)
    future: Future[tuple[int, float]] = Future()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(TRANSFER_TIMEOUT)
                future.set_result(handle(conn))
        except BaseException as exc:  # noqa: BLE001 - raised by the caller's result()
            future.set_exception(exc)

    with listener:
        threading.Thread(target=serve, daemon=True).start()
        try:
            yield listener.getsockname()[1], future
        finally:  # wakes an accept still waiting (the qube failed)
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(4096):
            conn.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


# --- the qube's ends --------------------------------------------------------------------

def in_qube(daemon: h.Septad, qube: str, command: str) -> str:
    return boot.tool(daemon, "qvm-run", "-p", qube, command, timeout=TRANSFER_TIMEOUT)


def upload(daemon: h.Septad, qube: str, size: int) -> float:
    """MB/s of ``size`` bytes from the qube into the host's sink."""
    with one_connection(_sink) as (port, result):
        in_qube(daemon, qube, f"head -c {size} /dev/zero | "
                              f"socat -u - TCP:{HOST_FROM_QUBES}:{port}")
        got, seconds = result.result(TRANSFER_TIMEOUT)
    if got != size:
        raise h.BenchError(f"upload from {qube}: the sink got {got} bytes, expected {size}")
    return size / 1e6 / seconds


def download(daemon: h.Septad, qube: str, size: int) -> float:
    """MB/s of ``size`` bytes from the host's source into ``wc -c`` in the qube."""
    with one_connection(_source(size)) as (port, result):
        counted = in_qube(daemon, qube, f"socat -u TCP:{HOST_FROM_QUBES}:{port} - | wc -c")
        _, seconds = result.result(TRANSFER_TIMEOUT)
    if counted.strip() != str(size):
        raise h.BenchError(f"download into {qube}: wc -c said {counted.strip()!r}, "
                           f"expected {size}")
    return size / 1e6 / seconds


def latency(daemon: h.Septad, qube: str, port: int, rtts: int) -> tuple[float, float]:
    """(median round trip, median connect) in seconds, as the qube's client timed them."""
    script = base64.b64encode(_LATENCY_CLIENT.encode()).decode()
    out = in_qube(daemon, qube, f"echo {script} | base64 -d > /tmp/septa-rtt.py && "
                                f"python3 /tmp/septa-rtt.py {HOST_FROM_QUBES} {port} {rtts}")
    try:
        rtt, connect = (float(x) for x in out.split())
    except ValueError:
        raise h.BenchError(f"latency client in {qube} printed {out!r}") from None
    return rtt, connect


# --- the run ----------------------------------------------------------------------------

def setup(daemon: h.Septad) -> None:
    """The template, the four qubes, all started (bapp starts its netvm chain)."""
    start = time.perf_counter()
    if not boot.exists(daemon, TEMPLATE):
        boot.tool(daemon, "qvm-template", "build", TEMPLATE, timeout=1800)
    print(f"qvm-template build {TEMPLATE}: {time.perf_counter() - start:.1f} s", flush=True)
    qubes = ((NET, ("provides_network=True", "netvm="), True),
             (FIREWALL, ("provides_network=True", f"netvm={NET}"), False),
             (APP, (f"netvm={FIREWALL}",), False),
             (DIRECT, ("netvm=",), True))
    for name, props, uplink in qubes:
        if not boot.exists(daemon, name):
            options = [arg for prop in props for arg in ("--prop", prop)]
            boot.tool(daemon, "qvm-create", "-t", TEMPLATE, "-l", "red", *options, name)
        if uplink:
            boot.tool(daemon, "qvm-features", name, "uplink", "slirp")
    for name in (APP, DIRECT):
        start = time.perf_counter()
        boot.tool(daemon, "qvm-start", name, timeout=900)
        print(f"qvm-start {name}: {time.perf_counter() - start:.1f} s", flush=True)
    memory = boot.tool(daemon, "qvm-prefs", APP, "memory").strip()
    vcpus = boot.tool(daemon, "qvm-prefs", APP, "vcpus").strip()
    print(f"each qube: {memory} MiB, {vcpus} vcpus", flush=True)


def interleaved(repeat: int, measure: Callable[[str], T]) -> dict[str, list[T]]:
    """``measure`` of each path ``repeat`` times, the order alternating."""
    results: dict[str, list[T]] = {qube: [] for qube, _ in PATHS}
    for repetition in range(repeat):
        order = PATHS if repetition % 2 == 0 else PATHS[::-1]
        for qube, _ in order:
            results[qube].append(measure(qube))
    return results


def report(title: str, unit: str, results: dict[str, list[float]], scale: float,
           digits: int) -> None:
    print(f"\n-- {title} --")
    table = h.Table("path", f"median {unit}", f"runs {unit}", "app / direct",
                    "paired app / direct")
    direct = results[DIRECT]
    for qube, label in PATHS:
        values = results[qube]
        paired = [v / d for v, d in zip(values, direct, strict=True)]
        table.add(label, f"{h.median(values) * scale:,.{digits}f}",
                  " ".join(f"{v * scale:,.{digits}f}" for v in values),
                  f"{h.median(values) / h.median(direct):.3f}", f"{h.median(paired):.3f}")
    table.print()


def measure(daemon: h.Septad, size: int, repeat: int, rtts: int) -> None:
    for qube, _ in PATHS:  # warm-up: translated code, ARP, conntrack, the qrexec path
        upload(daemon, qube, WARMUP)
        download(daemon, qube, WARMUP)
    mib = size >> 20
    report(f"1. upload, qube -> host: {mib} MiB, MB/s, median of {repeat}", "MB/s",
           interleaved(repeat, lambda qube: upload(daemon, qube, size)), 1, 1)
    report(f"2. download, host -> qube: {mib} MiB, MB/s, median of {repeat}", "MB/s",
           interleaved(repeat, lambda qube: download(daemon, qube, size)), 1, 1)
    with EchoServer(("127.0.0.1", 0), _Echo) as echo:
        thread = threading.Thread(target=echo.serve_forever, daemon=True)
        thread.start()
        try:
            port = echo.server_address[1]
            figures = interleaved(repeat, lambda qube: latency(daemon, qube, port, rtts))
        finally:
            echo.shutdown()
    report(f"3. latency: median of {rtts} one-byte round trips on one connection, ms, "
           f"median of {repeat}", "ms", {q: [r for r, _ in runs] for q, runs in figures.items()},
           1000, 2)
    report(f"4. TCP connect (SYN to established), median of {CONNECTS}, ms, median of "
           f"{repeat}", "ms", {q: [c for _, c in runs] for q, runs in figures.items()}, 1000, 2)


def run(args: argparse.Namespace) -> int:
    h.print_machine_facts("network: app qube via sys-firewall and sys-net vs. a qube on the "
                          "uplink", [
        *qrexec.qube_host_facts(),
        ("settings", f"{args.mib} MiB per transfer, {args.repeat} repetitions, "
                     f"{args.rtts} round trips, {CONNECTS} connects"),
    ])
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(h.temp_root("septa-bench-network-", "/var/tmp", 0o755))
        prefix = instance_prefix(root)
        stack.callback(qrexec._final_sweep, prefix)  # runs after septad has stopped
        daemon = stack.enter_context(h.septad(root, new_session=True))
        stack.callback(qrexec._kill_all, daemon)
        try:
            print(f"\nsetup (SEPTA_ROOT={root}):", flush=True)
            setup(daemon)
            accels = {name: qrexec._accel(prefix + name) for name in (NET, FIREWALL, APP,
                                                                      DIRECT)}
            print("accel: " + ", ".join(f"{n} {a}" for n, a in accels.items()), flush=True)
            measure(daemon, args.mib << 20, args.repeat, args.rtts)
            print(f"\napp / direct: the app qube's stream through {FIREWALL} and {NET} "
                  f"against {DIRECT}'s straight on its own slirp uplink (> 1 for ms: slower; "
                  "< 1 for MB/s: slower): the ratio of the medians, and the median of the "
                  "ratios of the runs made side by side (repetition by repetition); all "
                  "qubes under "
                  + ("TCG" if set(accels.values()) == {"tcg"} else "/".join(accels.values()))
                  + f", {os.cpu_count()} host cores shared by every running qube and other "
                  "sessions", flush=True)
        except h.BenchError:
            print(f"septad log tail:\n{h.log_tail(daemon.log, 25)}", file=sys.stderr)
            raise
        log_lines = daemon.log.read_text(errors="replace").splitlines()
    h.print_log_problems(log_lines)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--mib", type=int, default=64, help="MiB per transfer (64)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per path (3)")
    parser.add_argument("--rtts", type=int, default=200,
                        help="round trips per latency run (200)")
    args = parser.parse_args(argv)
    if args.mib < 1 or args.repeat < 1 or args.rtts < 1:
        parser.error("--mib, --repeat and --rtts must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return boot.guarded_run("network.py", run, _parse(argv))


if __name__ == "__main__":
    sys.exit(main())
