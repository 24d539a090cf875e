"""qrexec-client: dom0's program for calls into qubes, with the options of Qubes' own.

``qrexec-client -d QUBE [-t] [-T] [-e] [-l LOCAL] [-p PREFIX] [-w TIMEOUT] USER:COMMAND``
runs a command line, and ``USER:QUBESRPC SERVICE[+ARG] SOURCE`` a service (``DEFAULT``
is the qube's default user). The real Qubes ``qvm-run`` runs it as
``/usr/lib/qubes/qrexec-client``; Septa's setup links that path here. stdin, stdout and
stderr are connected and the exit code is the remote one (``-e``: start and do not wait).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Callable
from typing import IO

from septa.client.errors import QubesException
from septa.client.qrexec import CallRequest, run_call

PROG = "qrexec-client"
_UNSAFE = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")


def parse_cmdline(target: str, cmdline: str, autostart: bool) -> CallRequest:
    """A ``USER:COMMAND`` or ``USER:QUBESRPC SERVICE[+ARG] SOURCE`` command line."""
    user, sep, rest = cmdline.partition(":")
    if not sep or not user:
        raise ValueError(f"invalid command line {cmdline!r}: expected USER:COMMAND")
    user_name = None if user == "DEFAULT" else user
    if rest.startswith("QUBESRPC "):
        words = rest.split(" ")
        if len(words) < 2 or not words[1]:
            raise ValueError("QUBESRPC needs a service name")
        service, _, arg = words[1].partition("+")
        return CallRequest(target, service, arg, user=user_name, autostart=autostart)
    return CallRequest(target, command=rest, user=user_name, autostart=autostart)


def _sink(stream: IO[bytes], filtered: bool) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        stream.write(_UNSAFE.sub(b"_", data) if filtered else data)
        stream.flush()
    return write


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="run a command or a qrexec "
                                     "service in a qube, from dom0")
    parser.add_argument("-d", dest="domain", required=True, help="target qube")
    parser.add_argument("-t", dest="filter_stdout", action="store_true",
                        help="replace control characters in stdout")
    parser.add_argument("-T", dest="filter_stderr", action="store_true",
                        help="replace control characters in stderr")
    parser.add_argument("-e", dest="no_wait", action="store_true",
                        help="start the command and exit, without connecting stdio")
    parser.add_argument("-l", dest="local", help="connect this local program's stdio instead")
    parser.add_argument("-p", dest="prefix", default="", help="data sent before stdin")
    parser.add_argument("-w", dest="timeout", type=float, help="connection timeout (s)")
    parser.add_argument("-W", dest="wait_exit", action="store_true", help="(always waits)")
    parser.add_argument("-k", dest="kill", action="store_true", help="(accepted)")
    parser.add_argument("-c", dest="request_id", help="(accepted)")
    parser.add_argument("--no-autostart", action="store_false", dest="autostart",
                        help="do not start the qube if it is halted")
    parser.add_argument("cmdline", help="USER:COMMAND or USER:QUBESRPC SERVICE SOURCE")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        request = parse_cmdline(args.domain, args.cmdline, args.autostart)
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    prefix = args.prefix.encode()
    try:
        if args.local:
            with subprocess.Popen(args.local, shell=True, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE) as local:
                assert local.stdin is not None and local.stdout is not None
                status = run_call(request, stdin=local.stdout, prefix=prefix,
                                  stdout=_sink(local.stdin, False))
                local.stdin.close()
            return status
        if args.no_wait:
            run_call(request, stdin=None, prefix=prefix)
            return 0
        return run_call(request, stdin=sys.stdin.buffer, prefix=prefix,
                        stdout=_sink(sys.stdout.buffer, args.filter_stdout),
                        stderr=_sink(sys.stderr.buffer, args.filter_stderr))
    except QubesException as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
