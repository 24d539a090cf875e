"""qrexec-policy-exec: evaluate the qrexec policy for one call, as Qubes' tool of that name.

Only ``--just-evaluate`` is supported (Septa runs calls elsewhere)::

    qrexec-policy-exec --just-evaluate [--path DIR]... [--system-info FILE.json]
                       [--assume-yes-for-ask] SOURCE TARGET SERVICE[+ARG]

Unlike Qubes' ``--just-evaluate``, the execution-time checks apply too (the target
exists, a qube does not call itself, ``@dispvm`` needs a default_dispvm...). The decision
is printed as ``key=value`` lines, ``result=`` first:

- ``result=allow``: ``target=`` (qube, ``dom0``, or ``@dispvm:NAME`` for a new
  disposable), ``user=`` (empty: the default user), ``autostart=True|False``,
  ``notify=``, ``requested_target=``, ``rule=`` (FILE:LINE of the deciding rule);
- ``result=ask``: ``target=`` (as requested), ``targets=`` (the choices, space
  separated), ``default_target=`` (empty when none), ``user=``, ``autostart=``,
  ``notify=``, ``rule=``;
- ``result=deny``: ``reason=``, ``rule=`` (empty unless a rule denied).

Exit status: 0 allow, 1 deny (also: broken policy, septad unreachable), 2 usage error
(bad option, malformed service name or argument), 3 ask.

``--path DIR`` (repeatable) replaces the policy directories; ``--system-info FILE``
reads the registry facts from a JSON file (the ``internal.GetSystemInfo`` answer)
instead of asking septad.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

import septa.paths
from septa.client.errors import QubesException
from septa.client.transport import Transport
from septa.qrexec.policy import (
    Allow,
    Ask,
    Decision,
    Deny,
    PolicyCache,
    Request,
    RequestError,
    SystemInfo,
)

PROG = "qrexec-policy-exec"
EXIT_ALLOW, EXIT_DENY, EXIT_USAGE, EXIT_ASK = 0, 1, 2, 3


class UsageError(Exception):
    """A bad command line; reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def get_parser() -> argparse.ArgumentParser:
    """The command line of qrexec-policy-exec."""
    parser = _Parser(
        prog=PROG,
        description="Evaluate the qrexec policy for a call from SOURCE to TARGET.",
        epilog="Exit status: 0 allow, 1 deny, 2 usage error, 3 ask.",
    )
    parser.add_argument(
        "--just-evaluate",
        action="store_true",
        help="only evaluate the policy (required: Septa does not run calls from here)",
    )
    parser.add_argument(
        "--assume-yes-for-ask",
        action="store_true",
        help="treat 'ask' as the user allowing the requested target",
    )
    parser.add_argument(
        "--path",
        type=Path,
        action="append",
        metavar="DIR",
        help="policy directory to use instead of the default ones (repeatable)",
    )
    parser.add_argument(
        "--system-info",
        type=Path,
        metavar="FILE",
        help="read the qubes' facts from this JSON file instead of asking septad",
    )
    parser.add_argument("source", metavar="SOURCE", help="the calling qube")
    parser.add_argument("target", metavar="TARGET", help="the requested target (or @default)")
    parser.add_argument("call", metavar="SERVICE[+ARG]", help="the service and argument")
    return parser


def fetch_system_info() -> SystemInfo:
    """Ask septad (internal socket) for the facts the policy needs."""
    socket_path = septa.paths.current().internal_socket
    data = Transport(socket_path).call("dom0", "internal.GetSystemInfo")
    return SystemInfo.from_json(data)


def _read_system_info(path: Path) -> SystemInfo:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UsageError(f"--system-info {path}: {e.strerror or e}") from None
    try:
        return SystemInfo.from_json(data)
    except ValueError as e:
        raise UsageError(f"--system-info {path}: {e}") from None


def _print(decision: Decision) -> None:
    sys.stdout.write("".join(line + "\n" for line in decision.lines()))
    sys.stdout.flush()


def _exit_code(decision: Decision) -> int:
    if isinstance(decision, Allow):
        return EXIT_ALLOW
    if isinstance(decision, Ask):
        return EXIT_ASK
    return EXIT_DENY


def _evaluate(args: argparse.Namespace) -> int:
    if not args.just_evaluate:
        raise UsageError("only --just-evaluate is supported")
    for path in args.path or ():
        if not path.is_dir():
            raise UsageError(f"--path {path}: not a directory")
    try:
        request = Request.parse(args.source, args.target, args.call)
    except RequestError as e:
        raise UsageError(str(e)) from None
    if args.system_info is not None:
        info = _read_system_info(args.system_info)
    else:
        try:
            info = fetch_system_info()
        except (QubesException, ValueError, OSError) as e:
            print(f"{PROG}: error: cannot get system info: {e}", file=sys.stderr)
            _print(Deny(f"cannot get system info: {e}"))
            return EXIT_DENY
    dirs = [path.absolute() for path in args.path] if args.path else None
    decision = PolicyCache(dirs).evaluate(request, info)
    if isinstance(decision, Ask) and args.assume_yes_for_ask:
        wanted = "dom0" if request.target in ("@adminvm", "dom0") else request.target
        decision = decision.answer(wanted)
    if isinstance(decision, Deny) and decision.reason.startswith("policy error: "):
        print(f"{PROG}: error: {decision.reason}", file=sys.stderr)
    _print(decision)
    return _exit_code(decision)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    try:
        return _evaluate(get_parser().parse_args(argv))
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_DENY


if __name__ == "__main__":
    sys.exit(main())
