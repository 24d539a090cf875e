"""Admin API throughput of septad with a large registry, against the transport's own limit.

Starts a private ``septad`` under a fresh temporary ``SEPTA_ROOT``, creates one template
and ``--qubes`` AppVMs through ``admin.vm.Create`` (timed), then measures calls per
second of

- ``admin.vm.List`` (dest dom0: one line per qube, the largest common answer) and
- ``admin.vm.property.Get+memory`` (dest an AppVM: a small answer),

each with one client calling in a loop and with ``--clients`` concurrent clients. The
reference, measured in the same run and interleaved with septad repetition by
repetition, is a minimal asyncio unix-socket server (``_harness.reference_server``,
its own process, like septad) that reads each request to EOF and answers ``0\\0`` plus
as many bytes as septad answered: one connection per call is the protocol, so this is
the most any server in this language and event loop could do. Each figure is the median
of ``--repeat`` repetitions; ratios are medians of per-repetition ratios.

Usage: ``.venv/bin/python bench/admin_api.py [--qubes N] [--repeat R] [--seconds S]``
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import _harness as h


@dataclass
class Case:
    """One measured kind of call, with its answers' size and the results of each repetition."""

    label: str
    request: bytes
    clients: int
    answer_size: int = 0
    reference_socket: str = ""
    septad: list[float] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Admin API throughput of septad against a minimal asyncio server.")
    parser.add_argument("--qubes", type=int, default=1000, help="AppVMs to create (1000)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per figure (5)")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="duration of one repetition of one case, in seconds (1.0)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    args = parser.parse_args(argv)
    if args.qubes < 1 or args.repeat < 1 or args.seconds <= 0 or args.clients < 2:
        parser.error("need --qubes >= 1, --repeat >= 1, --seconds > 0, --clients >= 2")
    return args


def _creation_report(creation: h.Creation, create_reference: list[float]) -> None:
    blocks = creation.block_rates(10)
    count = len(creation.seconds)
    table = h.Table("admin.vm.Create.AppVM", "value")
    table.add("qubes created (sequential client)", f"{count}")
    table.add("total time", f"{creation.total:.2f} s")
    table.add("calls/s over the whole creation", f"{count / creation.total:.0f}")
    if blocks:
        size = max(1, count // 10)
        table.add(f"calls/s, median of {len(blocks)} blocks of {size}", f"{h.median(blocks):.0f}")
        table.add("calls/s, first block / last block",
                  f"{blocks[0]:.0f} / {blocks[-1]:.0f}")
    per_call = sorted(creation.seconds)
    table.add("ms per call, median (p90)",
              f"{h.median(per_call) * 1e3:.2f} ({per_call[int(0.9 * (count - 1))] * 1e3:.2f})")
    ref = h.median(create_reference)
    table.add(f"reference calls/s, same request (median of {len(create_reference)})",
              f"{ref:.0f}")
    table.add("ratio septad / reference (whole creation)", f"{count / creation.total / ref:.3f}")
    table.print()


def run(args: argparse.Namespace) -> int:
    h.print_machine_facts("Admin API throughput: septad vs. a minimal asyncio server", [
        ("settings", f"{args.qubes} qubes, {args.repeat} repetitions of {args.seconds:g} s "
                     f"per case, {args.clients} concurrent clients (threads)"),
    ])
    with h.temp_root() as root, h.septad(root) as daemon:
        sock = daemon.socket
        print(f"creating 1 template + {args.qubes} AppVMs through admin.vm.Create ...",
              flush=True)
        creation = h.make_qubes(sock, args.qubes)
        rss = h.rss_kib(daemon.proc.pid)

        target = f"app{args.qubes // 2}"
        list_request = h.encode("admin.vm.List", "dom0")
        get_request = h.encode("admin.vm.property.Get", target, "memory")
        listing = h.call_ok(sock, list_request)
        lines = listing[2:].decode().splitlines()
        if len(lines) != args.qubes + 2:
            print(f"note: admin.vm.List gave {len(lines)} lines, expected {args.qubes + 2} "
                  "(dom0 + template + AppVMs)")
        get_answer = h.call_ok(sock, get_request)
        print(f"admin.vm.List answer: {len(listing)} bytes; "
              f"property.Get+memory answer: {get_answer!r}; septad RSS: {rss} KiB\n",
              flush=True)

        cases = [Case(f"{name}, {clients} client{'s' if clients > 1 else ''}", request, clients)
                 for name, request in (("admin.vm.List", list_request),
                                       ("admin.vm.property.Get+memory", get_request))
                 for clients in (1, args.clients)]
        create_request = h.encode("admin.vm.Create.AppVM", "dom0", "tpl",
                                  f"name=app{args.qubes - 1} label=red".encode())
        create_reference: list[float] = []
        with h.reference_server(root, len(listing) - 2) as list_ref, \
                h.reference_server(root, len(get_answer) - 2) as get_ref, \
                h.reference_server(root, 0) as empty_ref:
            for case in cases:
                is_list = case.request == list_request
                case.answer_size = len(listing) if is_list else len(get_answer)
                case.reference_socket = list_ref if is_list else get_ref
                # warm up both servers (allocator, caches) before the timed repetitions
                h.calls_per_second(sock, case.request, case.clients, 0.2)
                h.calls_per_second(case.reference_socket, case.request, case.clients, 0.2)
            for rep in range(args.repeat):
                for case in cases:
                    # alternate which server goes first, so a drift does not favour one
                    order = [(sock, case.septad), (case.reference_socket, case.reference)]
                    for path, results in order if rep % 2 == 0 else order[::-1]:
                        results.append(h.calls_per_second(path, case.request, case.clients,
                                                          args.seconds))
                create_reference.append(h.calls_per_second(empty_ref, create_request, 1,
                                                           args.seconds))
                print(f"repetition {rep + 1}/{args.repeat}: " + ", ".join(
                    f"{c.septad[-1]:.0f}/{c.reference[-1]:.0f}" for c in cases)
                    + f", create ref {create_reference[-1]:.0f} calls/s", flush=True)
        log_tail = daemon.log.read_text(errors="replace").splitlines()

    print()
    table = h.Table("case", "answer B", "septad calls/s", "(min..max)",
                    "reference calls/s", "(min..max)", "septad/ref")
    for case in cases:
        table.add(case.label, f"{case.answer_size}", f"{h.median(case.septad):.0f}",
                  h.spread(case.septad), f"{h.median(case.reference):.0f}",
                  h.spread(case.reference), f"{h.paired_ratio(case.septad, case.reference):.3f}")
    table.print()
    print(f"(medians of {args.repeat} repetitions; septad/ref is the median of the "
          "per-repetition ratios)\n")
    _creation_report(creation, create_reference)
    h.print_log_problems(log_tail)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return run(args)
    except h.BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
