"""qvm-backup-restore: restore qubes from a Qubes backup (format 4), as Qubes' tool.

The backup is read once, as a stream, from a file in dom0 (``-``: stdin) or from a
qube (``--from-vm``/``-d``, through its ``qubes.Restore`` service). After the header
is authenticated with the passphrase (asked, or the first line of
``--passphrase-file``, ``-`` for stdin), the backup's ``qubes.xml`` gives the qubes it
holds; the summary table says what will happen to each (see
:mod:`~septa.tools.restore_plan`) and, unless the passphrase came from a file or
``--yes`` is given, the user confirms. Then the restore has two phases:

1. every member of the chosen qubes is authenticated and extracted into a private
   staging directory (``--staging-dir``, default ``/var/tmp``; removed at the end), so
   that a wrong passphrase, a changed, swapped or reordered chunk or a backup cut short
   fails before anything is created (:mod:`~septa.tools.restore_stage`);
2. the qubes are created with their settings and volume data, all of them or, on an
   error or Ctrl-C, none (:mod:`~septa.tools.restore_apply`).

``--verify-only`` does the first phase without writing anything. A qube whose name
exists on the host is never overwritten: the restore is refused unless
``--skip-conflicting`` or ``--rename-conflicting`` says what to do. A missing template,
netvm or default disposable template is replaced by the host's default and said so
(``--ignore-missing``, Qubes' option for that, is the default here); ``--skip-broken``
skips such qubes instead. dom0's home folder is never restored.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import re
import sys
from pathlib import Path

from septa.backup import BackupError, BackupReader, registry_xml
from septa.backup.registry_xml import BackupRegistry
from septa.client.app import Qubes
from septa.client.errors import BackupRestoreError, QubesException
from septa.tools.restore_apply import Restorer
from septa.tools.restore_host import host_view
from septa.tools.restore_plan import (
    Choices,
    Problem,
    QubeRestore,
    conflicts,
    make_plan,
    to_restore,
    unknown_names,
)
from septa.tools.restore_progress import ReadProgress
from septa.tools.restore_source import BackupSource, open_source
from septa.tools.restore_stage import check_space, stage, staging_dir
from septa.tools.restore_summary import summary

from .parser import QubesArgumentParser
from .runner import run

PROG = "qvm-backup-restore"
NOTHING_DONE = "Nothing was restored."
_FILTER = re.compile(r"\A[A-Za-z0-9_.+-]{1,64}\Z")

log = logging.getLogger(PROG)


def get_parser() -> QubesArgumentParser:
    """The command line of qvm-backup-restore."""
    parser = QubesArgumentParser(PROG, description="Restore qubes from a backup")
    parser.add_argument("--verify-only", action="store_true",
                        help="verify the backup's integrity without restoring anything")
    parser.add_argument("--skip-broken", action="store_true",
                        help="do not restore qubes whose template or netvm is missing")
    parser.add_argument("--ignore-missing", action="store_true",
                        help="restore qubes whose template or netvm is missing with the "
                             "host's default (the default behaviour)")
    parser.add_argument("--skip-conflicting", action="store_true",
                        help="do not restore qubes whose name exists on the host")
    parser.add_argument("--rename-conflicting", action="store_true",
                        help="restore qubes whose name exists on the host under a new "
                             "name (a number appended)")
    parser.add_argument("-x", "--exclude", action="append", default=[],
                        help="do not restore this qube (may be repeated)")
    parser.add_argument("--skip-dom0-home", action="store_true",
                        help="accepted for Qubes' compatibility: dom0's home is never "
                             "restored")
    parser.add_argument("-Z", "--compression-filter", dest="compression",
                        help="decompress with this program instead of the one the backup "
                             "header names")
    parser.add_argument("-d", "--dest-vm", "--from-vm", dest="appvm", metavar="QUBE",
                        help="the qube that holds the backup (read by its qubes.Restore)")
    parser.add_argument("-p", "--passphrase-file", dest="pass_file",
                        help="read the passphrase from this file, '-' for stdin")
    parser.add_argument("--staging-dir", type=Path, default=None,
                        help="where the backup is unpacked before the qubes are created "
                             "(default: /var/tmp)")
    parser.add_argument("--yes", "-y", action="store_true",
                        help="do not ask for confirmation")
    parser.add_argument("backup_location",
                        help="the backup file ('-' for stdin), or with --from-vm its "
                             "location in that qube (a file, or a command printing it)")
    parser.add_argument("vms", nargs="*", default=[], help="restore only these qubes")
    return parser


def read_passphrase(args: argparse.Namespace) -> str:
    """The passphrase, from ``--passphrase-file`` or asked on the terminal."""
    if args.pass_file == "-":
        return sys.stdin.readline().rstrip("\n")
    if args.pass_file is not None:
        try:
            with open(args.pass_file, encoding="utf-8") as source:
                return source.readline().rstrip("\n")
        except OSError as err:
            raise QubesException(f"cannot read the passphrase file: {err}") from None
    return getpass.getpass("Please enter the passphrase to verify and decrypt the backup: ")


def _check_choices(plan: list[QubeRestore], args: argparse.Namespace) -> None:
    """Qubes' checks after the summary: conflicts and qubes that cannot be restored."""
    if conflicts(plan):
        log.error("*** There are VMs with conflicting names on the host! ***")
        if not args.skip_conflicting:
            raise BackupRestoreError(
                "Remove VMs with conflicting names from the host before proceeding.\n"
                "Or use --skip-conflicting to restore only those VMs that do not exist "
                "on the host.\n"
                "Or use --rename-conflicting to restore those VMs under modified names "
                "(with numbers at the end).")
        log.error("Those VMs will not be restored. The host VMs will NOT be overwritten.")
    broken = [e.vm.name for e in plan
              if e.problem in (Problem.MISSING_TEMPLATE, Problem.MISSING_NETVM)]
    if broken and not args.skip_broken:
        raise BackupRestoreError(
            f"No template on the host or in the backup for: {', '.join(broken)} (and no "
            f"default_template to use instead). Install one, or pass --skip-broken.")
    if broken:
        log.warning("Skipping broken entries: %s will NOT be restored.", ", ".join(broken))
    if args.verify_only:
        log.info("The above VM archive(s) will be verified.")
        log.info("Existing VMs will NOT be removed or altered.")
    else:
        log.info("The above VMs will be copied and added to your system.")
        log.info("Existing VMs will NOT be removed.")


def _confirm(args: argparse.Namespace) -> bool:
    if args.yes or args.pass_file is not None or args.backup_location == "-" and \
            args.appvm in (None, "dom0"):
        return True
    return input("Do you want to proceed? [y/N] ").strip().upper() == "Y"


def _plan(app: Qubes, registry: BackupRegistry,
          args: argparse.Namespace) -> list[QubeRestore]:
    unknown = unknown_names(registry, args.vms)
    if unknown:
        held = ", ".join(vm.name for vm in registry.included()) or "no qubes"
        raise BackupRestoreError(f"not in the backup: {', '.join(unknown)} (it holds {held})")
    for name in unknown_names(registry, args.exclude):
        log.warning("--exclude %s: no such qube in the backup", name)
    choices = Choices(only=list(args.vms), exclude=list(args.exclude),
                      rename_conflicting=args.rename_conflicting,
                      skip_conflicting=args.skip_conflicting, skip_broken=args.skip_broken,
                      verify_only=args.verify_only)
    return make_plan(registry, host_view(app, registry), choices)


def _restore(app: Qubes, args: argparse.Namespace, passphrase: str,
             source: BackupSource) -> int:
    with staging_dir(args.staging_dir) as staging:
        progress = ReadProgress(source.total)
        reader = BackupReader(source.stream, passphrase, tmp_dir=staging,
                              force_filter=args.compression, progress=progress)
        registry = registry_xml.parse(reader.read_qubes_xml())
        plan = _plan(app, registry, args)
        print(summary(plan))
        if registry.dom0_home and not args.skip_dom0_home:
            log.info("The backup holds dom0's home folder (%s): it is not restored.",
                     registry.dom0_home)
        _check_choices(plan, args)
        chosen = to_restore(plan)
        if not chosen:
            print("Nothing to restore.")
            return 0
        if not _confirm(args):
            return 0
        if not args.verify_only:
            check_space(staging, chosen)
        try:
            with progress:
                staged = stage(reader, plan, staging, verify_only=args.verify_only)
            source.finish()
        except QubesException as err:
            raise BackupRestoreError(f"{err}\n{NOTHING_DONE}") from None
        if args.verify_only:
            print(f"-> Verified: the backup of {len(chosen)} qube(s) is complete and "
                  f"authentic.")
            return 0
        restorer = Restorer(app, [staged[entry.vm.name] for entry in chosen])
        restorer.run()
    print(f"-> Done: restored {', '.join(restorer.created)}." +
          (f" ({restorer.warnings} warning(s) above.)" if restorer.warnings else ""))
    if any(entry.vm.klass == "TemplateVM" for entry in chosen):
        print("-> Please install updates for all the restored templates.")
    return 0


def _main(argv: list[str] | None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.compression is not None and not _FILTER.match(args.compression):
        parser.error(f"invalid compression filter {args.compression!r}")
    if args.pass_file == "-" and args.backup_location == "-" and args.appvm in (None, "dom0"):
        parser.error("the passphrase and the backup cannot both come from stdin")
    app = Qubes()
    if args.appvm not in (None, "dom0") and args.appvm not in app.domains:
        parser.error(f"no such domain: {args.appvm!r}")
    passphrase = read_passphrase(args)
    log.info("Checking backup content...")
    source = open_source(args.backup_location, args.appvm)
    try:
        return _restore(app, args, passphrase, source)
    except BackupError as err:
        source.close()
        cause = source.failure()
        message = str(err) if cause is None else f"{cause} ({err})"
        if "unusual compression filter" in message:
            message += " (use --compression-filter to use it anyway)"
        raise BackupRestoreError(f"{message}\n{NOTHING_DONE}") from None
    finally:
        with contextlib.suppress(OSError):
            source.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of qvm-backup-restore."""
    return run(PROG, lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
