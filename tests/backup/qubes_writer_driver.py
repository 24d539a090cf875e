"""Run by a Python that can import the Qubes 4.3 admin client (not by pytest): write a
format 4 backup with the client's own test-suite writer
(``TC_10_BackupCompatibility.create_v4_backup``: ``tar -Pc --sparse`` inner archives,
``split`` into 100 MiB parts, ``scrypt enc`` per part, ``tar -cO --posix`` per file),
leaving ``backup.bin`` and the source files in WORKDIR.

usage: python qubes_writer_driver.py WORKDIR COMPRESSION   (COMPRESSION: gzip or "")
"""

import logging
import sys

from qubesadmin.tests.backup.backupcompatibility import TC_10_BackupCompatibility


def main():
    work, compression = sys.argv[1], sys.argv[2]
    case = TC_10_BackupCompatibility("test_230_r4")
    case.backupdir = work
    case.log = logging.getLogger("qubes-writer")
    case.create_v4_backup(compressed=compression or False)


if __name__ == "__main__":
    main()
