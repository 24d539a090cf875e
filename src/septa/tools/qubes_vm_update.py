"""qubes-vm-update: update the software of templates (and other qubes) with apt.

For each target, one at a time: start it if it is halted, run ``apt-get update`` and
``apt-get -y upgrade`` as root in it (``qubes.VMShell``), shut it down again if this
tool started it; then one summary line per qube. Qubes 4.3's options kept:
``--targets A,B`` (any qubes, added to the classes chosen), ``--templates/-T``,
``--standalones/-S``, ``--apps/-A`` (running AppVMs, in place), ``--all`` (all of
those), ``--skip A,B``, ``--no-refresh``, ``--force-upgrade/-f``, ``--dry-run``,
``--quiet/-q``, ``--show-output/--verbose/-v``. Unlike Qubes, there is no record of
available updates to select by: with no targeting option every template is updated.
Qubes with the feature ``skip-update`` are left out unless named in ``--targets``.

Exit status as Qubes': 0 ok, 23 a refresh failed, 24 an upgrade failed, 11 a template
could not be shut down again, 40 a call into a qube failed, 64 an unknown qube name,
1 another error; with several failures the highest.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from septa.client.app import Qubes
from septa.client.errors import QubesException
from septa.client.qrexec import CallRequest, run_call
from septa.client.vm import QubesVM

from .runner import run

PROG = "qubes-vm-update"
EXIT_ERROR = 1
EXIT_SHUTDOWN = 11
EXIT_REFRESH = 23
EXIT_UPGRADE = 24
EXIT_CALL = 40
EXIT_USAGE = 64

APT_ENV = "export DEBIAN_FRONTEND=noninteractive; "
REFRESH = APT_ENV + "apt-get -q update"
UPGRADE = (APT_ENV + "apt-get -q -y -o Dpkg::Options::=--force-confdef "
           "-o Dpkg::Options::=--force-confold upgrade")
_COUNTS = re.compile(rb"(\d+) upgraded, (\d+) newly installed, (\d+) to remove")
_TAIL_LINES = 5


class UpdateFailed(Exception):
    """A step failed: ``args`` = (exit status of the tool, what to report)."""


@dataclass
class Outcome:
    """How the update of one qube went."""

    status: str = "success"
    code: int = 0
    details: list[str] = field(default_factory=list)


def get_parser() -> argparse.ArgumentParser:
    """The command line of qubes-vm-update."""
    parser = argparse.ArgumentParser(prog=PROG, description="update software in qubes")
    parser.add_argument("--no-refresh", action="store_true",
                        help="do not refresh available packages before upgrading")
    parser.add_argument("--force-upgrade", "-f", action="store_true",
                        help="upgrade even if the refresh failed")
    parser.add_argument("--skip", default="",
                        help="comma separated list of qubes to leave out")
    parser.add_argument("--targets", default="",
                        help="comma separated list of qubes to update")
    parser.add_argument("--templates", "-T", action="store_true",
                        help="update all templates (the default)")
    parser.add_argument("--standalones", "-S", action="store_true",
                        help="update all standalone qubes")
    parser.add_argument("--apps", "-A", action="store_true",
                        help="update running AppVMs in place (lost at their restart)")
    parser.add_argument("--all", action="store_true",
                        help="templates, standalones and running AppVMs")
    parser.add_argument("--dry-run", action="store_true", help="just print what would happen")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing to stdout")
    parser.add_argument("--show-output", "--verbose", "-v", action="store_true",
                        help="show the output of the package manager")
    return parser


def _names(text: str) -> list[str]:
    return [name for name in text.split(",") if name]


def select_targets(app: Qubes, args: argparse.Namespace) -> list[QubesVM]:
    """The qubes to update, in name order; :class:`UpdateFailed` for unknown names."""
    by_class = {"TemplateVM": args.templates or args.all, "StandaloneVM": args.standalones
                or args.all, "AppVM": args.apps or args.all}
    if not (args.targets or any(by_class.values())):
        by_class["TemplateVM"] = True
    chosen = {vm.name: vm for vm in app.domains
              if by_class.get(vm.klass) and (vm.klass != "AppVM" or vm.is_running())
              and not vm.features.get("skip-update")}
    explicit = _names(args.targets)
    unknown = [name for name in explicit if name not in app.domains]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise UpdateFailed(EXIT_USAGE, f"Unknown qube name{plural}: {', '.join(unknown)}")
    for name in explicit:
        chosen[name] = app.domains[name]
    skip = set(_names(args.skip)) | {"dom0"}
    return [chosen[name] for name in sorted(chosen) if name not in skip]


class Updater:
    """Updates qubes one by one and reports on the way."""

    def __init__(self, args: argparse.Namespace,
                 say: Callable[[str], None], show: Callable[[bytes], None] | None) -> None:
        self.args = args
        self.say = say
        self.show = show

    def _step(self, vm: QubesVM, what: str, command: str, code: int) -> bytes:
        """Run ``command`` as root in the qube; its output, or :class:`UpdateFailed`."""
        self.say(f"{vm.name}: {what}")
        output: list[bytes] = []

        def collect(data: bytes) -> None:
            output.append(data)
            if self.show is not None:
                self.show(data)

        try:
            status = run_call(CallRequest(vm.name, "qubes.VMShell", user="root"),
                              prefix=f"{command}; exit\n".encode(),
                              stdout=collect, stderr=collect)
        except QubesException as exc:
            raise UpdateFailed(EXIT_CALL, f"{what}: {exc}") from None
        text = b"".join(output)
        if status != 0:
            tail = text.decode(errors="replace").strip().splitlines()[-_TAIL_LINES:]
            raise UpdateFailed(code, f"{what} failed (exit status {status})", *tail)
        return text

    def update(self, vm: QubesVM) -> Outcome:
        """Update one qube; how it went."""
        outcome = Outcome()
        started = False
        try:
            if vm.is_halted():
                self.say(f"{vm.name}: starting")
                vm.start()
                started = True
            if not self.args.no_refresh:
                try:
                    self._step(vm, "refreshing package lists", REFRESH, EXIT_REFRESH)
                except UpdateFailed as exc:
                    if not self.args.force_upgrade:
                        raise
                    outcome.code, outcome.details = exc.args[0], list(exc.args[1:])
            text = self._step(vm, "upgrading", UPGRADE, EXIT_UPGRADE)
            counts = _COUNTS.search(text)
            if counts and not any(int(n) for n in counts.groups()):
                outcome.status = "no updates"
        except UpdateFailed as exc:
            outcome.status = "error"
            outcome.code, outcome.details = exc.args[0], list(exc.args[1:])
        except QubesException as exc:
            outcome.status, outcome.code, outcome.details = "error", EXIT_ERROR, [str(exc)]
        if outcome.code and outcome.status != "error":
            outcome.status = "error"
        if started:
            self.say(f"{vm.name}: shutting down")
            try:
                vm.shutdown(wait=True)
            except QubesException as exc:
                outcome.status = "error"
                outcome.code = max(outcome.code, EXIT_SHUTDOWN)
                outcome.details.append(f"cannot shut it down again: {exc}")
        return outcome


def _main(argv: list[str] | None) -> int:
    args = get_parser().parse_args(argv)
    app = Qubes()
    say: Callable[[str], None] = (lambda text: None) if args.quiet else print
    try:
        targets = select_targets(app, args)
    except UpdateFailed as exc:
        print(exc.args[1], file=sys.stderr)
        return int(exc.args[0])
    if not targets:
        say("No qube selected for update")
        return 0
    say("Following qubes will be updated: " + ", ".join(vm.name for vm in targets))
    if args.dry_run:
        return 0

    def show(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    updater = Updater(args, say, show if args.show_output and not args.quiet else None)
    outcomes = {vm.name: updater.update(vm) for vm in targets}
    for name, outcome in outcomes.items():
        say(f"{name}: {outcome.status}")
        for line in outcome.details:
            print(f"    {line}", file=sys.stderr)
    return max(outcome.code for outcome in outcomes.values())


def main(argv: list[str] | None = None) -> int:
    """Entry point of qubes-vm-update."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
