"""Run by pytest in a subprocess: write a format 4 backup with the writer of Qubes itself
(``qubes/backup.py`` of qubes-core-admin: ``Backup._prepare_backup_header``,
``Backup._wrap_and_send_files`` and ``SendWorker``), without a Qubes system.

The writer runs unchanged. Around it: a ``Backup`` object is made without its
constructor (which wants a Qubes collection), ``docutils``/``jinja2`` (imported by
``qubes.utils`` for other purposes) are stubbed when missing, ``python3`` on PATH is this
interpreter (for ``python3 -m qubes.tarwriter``, Qubes' sparse tar writer of volumes),
and ``scrypt`` on PATH adds cheap parameters to ``scrypt enc`` (the tool otherwise
spends seconds and GiBs per chunk calibrating).

usage: python qubes_core_writer_driver.py CORE_ADMIN_DIR OUT PASSPHRASE CHUNK_SIZE COMPRESS
       QUBES_XML [SUBDIR:NAME:PATH ...]
"""

import asyncio
import importlib.util
import logging
import os
import sys
import tempfile
import time


def _prepare(core_admin):
    tools = tempfile.mkdtemp(prefix="qubes-writer-")
    for name in ("docutils", "docutils.core", "docutils.io", "jinja2"):
        if importlib.util.find_spec(name.split(".")[0]) is None:
            path = os.path.join(tools, "stubs", *name.split("."))
            os.makedirs(path, exist_ok=True)
            open(os.path.join(path, "__init__.py"), "w").close()
    os.makedirs(os.path.join(tools, "bin"))
    shims = {
        "python3": f'#!/bin/sh\nexec {sys.executable} "$@"\n',
        "scrypt": '#!/bin/sh\nif [ "$1" = enc ]; then shift; '
                  'exec /usr/bin/scrypt enc --logN 10 -r 8 -p 1 "$@"; fi\n'
                  'exec /usr/bin/scrypt "$@"\n',
    }
    for name, text in shims.items():
        path = os.path.join(tools, "bin", name)
        with open(path, "w") as shim:
            shim.write(text)
        os.chmod(path, 0o755)
    os.environ["PATH"] = os.path.join(tools, "bin") + ":" + os.environ["PATH"]
    os.environ["PYTHONPATH"] = ":".join([core_admin, os.path.join(tools, "stubs")])
    sys.path[:0] = [core_admin, os.path.join(tools, "stubs")]


async def write(out_path, passphrase, chunk_size, compressed, qubes_xml, files):
    import qubes.backup as qb

    backup = qb.Backup.__new__(qb.Backup)
    backup.chunk_size = chunk_size
    backup._current_vm_bytes = backup._done_vms_bytes = backup.total_backup_bytes = 0
    backup.compressed = compressed
    backup.compression_filter = qb.DEFAULT_COMPRESSION_FILTER
    backup.passphrase = passphrase.encode()
    backup.progress_callback = None
    backup.last_progress_time = time.time()
    backup.backup_id = "20240102T030405-4321"
    backup.log = logging.getLogger("qubes.backup")
    backup.tmpdir = tempfile.mkdtemp()
    vms = [qb.Backup.VMToBackup(None, [qb.Backup.FileToBackup(qubes_xml, "")], "")]
    by_subdir = {}
    for spec in files:
        subdir, name, path = spec.split(":", 2)
        by_subdir.setdefault(subdir, []).append(
            qb.Backup.FileToBackup(path, subdir, name=name, size=os.path.getsize(path)))
    vms += [qb.Backup.VMToBackup(None, items, subdir) for subdir, items in by_subdir.items()]
    queue = asyncio.Queue(10)
    with open(out_path, "wb") as out:
        sender = asyncio.ensure_future(qb.SendWorker(queue, backup.tmpdir, out).run())
        for name in await backup._prepare_backup_header():
            await queue.put(name)
        await backup._wrap_and_send_files(vms, queue)
        await sender


def main():
    core_admin, out, passphrase, chunk_size, compress, qubes_xml, *files = sys.argv[1:]
    _prepare(core_admin)
    asyncio.run(write(out, passphrase, int(chunk_size), compress == "1", qubes_xml, files))


if __name__ == "__main__":
    main()
