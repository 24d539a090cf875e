"""The argument parser shared by the tools: Qubes' common options and qube name arguments.

Every tool accepts ``--verbose/-v``, ``--quiet/-q``, ``--help/-h`` and ``--version``
(and ignores ``--force-root``). Tools that act on qubes take VMNAME arguments in one of
Qubes' shapes: exactly one, at most one, or a list with ``--all`` / ``--exclude``
(where shell-style wildcards select matching qubes).
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from typing import Any, NoReturn

from septa.client.app import Qubes
from septa.client.vm import QubesVM

from . import logs

_WILDCARDS = "*?[!]"


class _VersionAction(argparse.Action):
    """``--version``: print the tool and Septa version (looked up only when asked)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings,
            argparse.SUPPRESS,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show program's version number and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        import importlib.metadata

        try:
            version = importlib.metadata.version("septa")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        print(f"{parser.prog} (Septa) {version}")
        parser.exit(0)


class QubesArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` with the options all qvm-* tools share.

    ``vmname_nargs`` is None (no qube argument), ``1``, ``"?"``, ``"*"`` or ``"+"``;
    the list forms also get ``--all`` and ``--exclude``.
    """

    def __init__(self, prog: str, vmname_nargs: int | str | None = None, **kwargs: Any) -> None:
        super().__init__(prog=prog, add_help=False, **kwargs)
        self.vmname_nargs = vmname_nargs
        self.add_argument("--verbose", "-v", action="count", help="increase verbosity")
        self.add_argument("--quiet", "-q", action="count", help="decrease verbosity")
        self.add_argument(
            "--force-root", action="store_true", default=False, help=argparse.SUPPRESS
        )
        self.add_argument("--help", "-h", action="help", help="show this help message and exit")
        self.add_argument("--version", action=_VersionAction)
        if vmname_nargs in ("*", "+"):
            group = self.add_mutually_exclusive_group(required=vmname_nargs == "+")
            group.add_argument(
                "--all", action="store_true", dest="all_domains", help="act on all qubes"
            )
            self.add_argument(
                "--exclude", action="append", default=[], help="leave this qube out of --all"
            )
            group.add_argument("VMNAME", nargs="*", default=[], help="qube name(s)")
        elif vmname_nargs is not None:
            self.add_argument("VMNAME", nargs=vmname_nargs, help="qube name")
        self.set_defaults(verbose=1, quiet=0, all_domains=False, exclude=[])

    def parse_args(  # type: ignore[override]
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """Parse, then apply the verbosity options to logging."""
        ns = super().parse_args(args, namespace)
        logs.configure(ns.verbose, ns.quiet)
        return ns

    def error_runtime(self, message: object, exit_code: int = 1) -> NoReturn:
        """Exit with ``prog: error: message`` and no usage text (a runtime failure)."""
        self.exit(exit_code, f"{self.prog}: error: {message}\n")

    def print_error(self, message: object) -> None:
        """Report a failure as ``Error: message`` on stderr and carry on (as Qubes' tools do)."""
        print("Error:", message, file=sys.stderr)

    def vm_names(self, args: argparse.Namespace) -> list[str]:
        """The VMNAME arguments as a list (whatever the nargs shape)."""
        value = getattr(args, "VMNAME", None)
        if value is None:
            return []
        return [value] if isinstance(value, str) else list(value)

    def domains(
        self,
        app: Qubes,
        args: argparse.Namespace,
        missing: list[str] | None = None,
        wildcards: bool = True,
    ) -> list[QubesVM]:
        """The qubes the arguments name, in argument order.

        With ``--all``: every qube but dom0 and the ``--exclude`` ones. Wildcards match
        existing names. An unknown name ends the program with "no such domain", unless
        a ``missing`` list is given to collect such names instead. With ``wildcards``
        False, names are taken literally.
        """
        if args.all_domains:
            return [
                vm for vm in app.domains if vm.klass != "AdminVM" and vm.name not in args.exclude
            ]
        if args.exclude:
            self.error("--exclude can only be used with --all")
        names: list[str] = []
        for pattern in self.vm_names(args):
            if wildcards and any(ch in pattern for ch in _WILDCARDS):
                names += [
                    n for n in app.domains.names() if n not in names and fnmatch.fnmatch(n, pattern)
                ]
            elif pattern not in names:
                names.append(pattern)
        result = []
        for name in names:
            if name in app.domains:
                result.append(app.domains.get_blind(name))
            elif missing is not None:
                missing.append(name)
            else:
                self.error(f"no such domain: {name!r}")
        return result
