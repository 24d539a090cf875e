"""qvm-run: run a command in qubes, as Qubes' tool does.

Without ``--pass-io`` the command's output is dropped; with it, stdin, stdout and
stderr are connected and the exit code is the command's. A shell command goes to
``qubes.VMShell`` on its stdin (``<cmd>; exit``); with arguments or ``--no-shell`` it
becomes ``qubes.VMExec+<encoded argv>``; ``--service`` calls a service by name.
Halted qubes are started first unless ``--no-autostart``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TextIO

from septa.client.app import Qubes
from septa.client.errors import QubesException
from septa.client.qrexec import CallRequest, run_call

from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-run"


def encode_for_vmexec(args: list[str]) -> str:
    """Qubes' escaping of an argv into a VMExec argument: ``+`` between arguments,
    ``-XX`` for other bytes, ``--`` for a literal ``-``."""
    def part(arg: str) -> str:
        out = []
        for byte in arg.encode():
            char = chr(byte)
            if char.isascii() and (char.isalnum() or char in "_."):
                out.append(char)
            elif char == "-":
                out.append("--")
            else:
                out.append(f"-{byte:02X}")
        return "".join(out)

    return "+".join(part(a) for a in args)


def get_parser() -> QubesArgumentParser:
    parser = QubesArgumentParser(PROG, vmname_nargs=None,
                                 description="run a command in a qube")
    parser.add_argument("--user", "-u", help="run as this user")
    parser.add_argument("--autostart", "--auto", "-a", action="store_true", default=True,
                        help="start the qube if it is not running (default)")
    parser.add_argument("--no-autostart", "--no-auto", "-n", action="store_false",
                        dest="autostart", help="do not start the qube")
    parser.add_argument("--pass-io", "-p", action="store_true", dest="passio",
                        help="connect stdin, stdout and stderr; exit with the command's code")
    parser.add_argument("--gui", action="store_true", default=None, help="(no GUI yet)")
    parser.add_argument("--no-gui", "--nogui", action="store_false", dest="gui")
    parser.add_argument("--service", action="store_true",
                        help="COMMAND is a qrexec service name (SERVICE[+ARG])")
    parser.add_argument("--no-shell", action="store_true",
                        help="run the command without a shell (qubes.VMExec)")
    parser.add_argument("--filter-escape-chars", action="store_true", dest="filter_esc")
    parser.add_argument("--no-filter-escape-chars", action="store_false", dest="filter_esc")
    parser.add_argument("--dispvm", nargs="?", const=True, default=None, metavar="BASE",
                        help="run in a new disposable (from BASE, else the default "
                        "disposable template), destroyed when the command ends")
    parser.add_argument("--all", action="store_true", dest="all_domains",
                        help="run in every running qube")
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("VMNAME", nargs="?", help="qube name")
    parser.add_argument("cmd", metavar="COMMAND", nargs="?", help="command to run")
    parser.add_argument("cmd_args", nargs=argparse.REMAINDER, metavar="ARG")
    return parser


def _request(args: argparse.Namespace, vm: str) -> tuple[CallRequest, bytes]:
    if args.service:
        service, _, arg = args.cmd.partition("+")
        return CallRequest(vm, service, arg, user=args.user, autostart=args.autostart), b""
    if args.cmd_args or args.no_shell:
        argument = encode_for_vmexec([args.cmd, *args.cmd_args])
        return CallRequest(vm, "qubes.VMExec", argument, user=args.user,
                           autostart=args.autostart), b""
    return (CallRequest(vm, "qubes.VMShell", user=args.user, autostart=args.autostart),
            f"{args.cmd}; exit\n".encode())


def _writer(stream: TextIO) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        stream.buffer.write(data)
        stream.buffer.flush()
    return write


def _run_in_disposable(app: Qubes, args: argparse.Namespace) -> int:
    base = "dom0" if args.dispvm is True else str(args.dispvm)
    name = app.call(base, "admin.vm.CreateDisposable").decode()
    try:
        request, prefix = _request(args, name)
        return run_call(request, prefix=prefix,
                        stdin=sys.stdin.buffer if args.passio else None,
                        stdout=_writer(sys.stdout) if args.passio else None,
                        stderr=_writer(sys.stderr) if args.passio else None)
    finally:
        _destroy(app, name)


def _destroy(app: Qubes, name: str) -> None:
    """Kill the disposable (septad removes it as it stops); remove it if it never ran."""
    try:
        app.call(name, "admin.vm.Kill")
    except QubesException:
        pass
    if name in app.domains:
        try:
            app.call(name, "admin.vm.Remove")
        except QubesException as exc:
            print(f"{PROG}: error: cannot remove disposable {name}: {exc}", file=sys.stderr)


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    app = Qubes()
    if args.dispvm is not None:
        if args.all_domains or args.exclude:
            parser.error("--dispvm cannot be used with --all or --exclude")
        if args.VMNAME is not None:
            if args.cmd is not None:
                args.cmd_args.insert(0, args.cmd)
            args.cmd = args.VMNAME
        if args.cmd is None:
            parser.error("a command is needed")
        return _run_in_disposable(app, args)
    if args.all_domains:
        if args.VMNAME is not None:
            if args.cmd is not None:
                args.cmd_args.insert(0, args.cmd)
            args.cmd = args.VMNAME
        names = [vm.name for vm in app.domains if vm.name != "dom0" and vm.is_running()
                 and vm.name not in args.exclude]
    else:
        if args.VMNAME is None or args.cmd is None:
            parser.error("a qube name and a command are needed")
        if args.VMNAME not in app.domains:
            parser.error_runtime(f"no such domain: '{args.VMNAME}'")
        names = [args.VMNAME]
    verbose = (args.verbose or 0) - (args.quiet or 0) - (1 if args.passio else 0)
    code = 0
    for name in names:
        vm = app.domains[name]
        if not args.autostart and not vm.is_running():
            if verbose > 0:
                print(f"Qube '{name}' not started", file=sys.stderr)
            code = max(code, 1)
            continue
        if verbose > 0:
            print(f"Running '{args.cmd}' on {name}", file=sys.stderr)
        request, prefix = _request(args, name)
        try:
            status = run_call(
                request, prefix=prefix,
                stdin=sys.stdin.buffer if args.passio and len(names) == 1 else None,
                stdout=_writer(sys.stdout) if args.passio else None,
                stderr=_writer(sys.stderr) if args.passio else None)
        except QubesException as exc:
            print(f"{PROG}: error: {name}: {exc}", file=sys.stderr)
            return 255
        if status and verbose > 0:
            print(f"{name}: command failed with code: {status}", file=sys.stderr)
        code = max(code, status)
    return code


def main(argv: list[str] | None = None) -> int:
    return run(PROG, lambda: _main(argv))
