"""Run by the Qubes 4.3 admin client's own Python (not by pytest): read a backup with
Qubes' restore code (``qubesadmin.backup.restore.BackupRestore``), as far as it goes
without a running Qubes, and print what it found as JSON.

Qubes' code does all of it: ``tar -ixv`` of the outer stream, the header check with
``scrypt dec`` through a pty, the extraction worker (``tar -xvvO`` through the
compression filter) for qubes.xml and for each chunked member, parsing qubes.xml with
``Core3Qubes``. Only the final import of data into qubes is ours: the handlers save
each member's stream to a file.

usage: python qubes_restore_driver.py BACKUP PASSPHRASE WORKDIR MEMBER... [--verify-only]
"""

import functools
import json
import os
import shutil
import sys

from qubesadmin.backup.restore import BackupRestore


class NoQubes:
    """The host collection: empty, so no name conflicts."""

    domains: dict[str, object] = {}


def save(path, stream, *, file_size=None):
    with open(path, "wb") as out:
        shutil.copyfileobj(stream, out)
    with open(path + ".size", "w") as out:
        out.write(str(file_size))


def main():
    verify_only = "--verify-only" in sys.argv
    backup, passphrase, work, *members = [a for a in sys.argv[1:] if a != "--verify-only"]
    os.makedirs(os.path.join(work, "tmp"), exist_ok=True)
    restore = BackupRestore(NoQubes(), backup, None, passphrase,
                            tmpdir=os.path.join(work, "tmp"))
    header = restore.header_data
    vms = {name: vm.backup_path for name, vm in restore.backup_app.domains.items()
           if vm.included_in_backup}
    handlers = {}
    for member in members:
        handlers[member] = functools.partial(
            save, os.path.join(work, member.replace("/", "--")))
    restore.options.verify_only = verify_only
    dirs = sorted({member.split("/")[0] + "/" for member in members})
    restore._restore_vm_data(vms_dirs=dirs, vms_size=1 << 40, handlers=handlers)
    print(json.dumps({
        "header": {"version": header.version, "encrypted": header.encrypted,
                   "compressed": header.compressed,
                   "compression_filter": header.compression_filter,
                   "hmac_algorithm": header.hmac_algorithm, "backup_id": header.backup_id},
        "vms": vms,
    }))


if __name__ == "__main__":
    main()
