"""The dom0 service behind ``admin.vm.volume.ImportWithSize`` and ``admin.vm.volume.Import``.

Volume data does not fit in one Admin API call, so, as in Qubes, the client runs this
program with the target qube in ``QREXEC_REQUESTED_TARGET``, the volume name as its
argument and the data on stdin (``"<size>\\n"`` first for ImportWithSize). It asks septad
on the internal socket where to write (``internal.vm.volume.ImportBegin``), writes the
data (holes stay holes), then reports (``internal.vm.volume.ImportEnd``) and prints
septad's answer frame, which the client parses.
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO

import septa.paths
from septa.client.errors import QubesException
from septa.client.transport import Transport

BLOCK = 1 << 20


def _copy(source: BinaryIO, path: str, size: int | None) -> int:
    """Copy ``size`` bytes (all, if None) from ``source`` to ``path``; zero blocks seek."""
    done = 0
    zero = bytes(BLOCK)
    with open(path, "r+b") as out:
        while size is None or done < size:
            want = BLOCK if size is None else min(BLOCK, size - done)
            block = source.read(want)
            if not block:
                break
            if block == zero[:len(block)]:
                out.seek(len(block), os.SEEK_CUR)
            else:
                out.write(block)
            done += len(block)
        out.truncate(max(done, size or 0) if size is not None else done)
    return done


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with_size = "--with-size" in args
    names = [a for a in args if not a.startswith("--")]
    vm = os.environ.get("QREXEC_REQUESTED_TARGET", "")
    if len(names) != 1 or not vm:
        print("usage: QREXEC_REQUESTED_TARGET=<qube> volume_import_service [--with-size] "
              "VOLUME < data", file=sys.stderr)
        return 2
    volume = names[0]
    internal = Transport(septa.paths.current().internal_socket)
    stdin = sys.stdin.buffer
    size: int | None = None
    if with_size:
        line = stdin.readline(32).strip()
        if not line.isdigit():
            print("Invalid size line", file=sys.stderr)
            return 1
        size = int(line)
    try:
        path = internal.call(vm, "internal.vm.volume.ImportBegin", volume,
                             str(size if size is not None else "").encode()).decode()
    except QubesException as exc:
        sys.stdout.buffer.write(b"2\0QubesException\0\0" + str(exc).encode() + b"\0")
        return 1
    status = b"ok"
    try:
        written = _copy(stdin, path, size)
        if size is not None and written != size:
            status = f"fail\nGot {written} bytes of data, expected {size}".encode()
    except OSError as exc:
        status = f"fail\n{exc}".encode()
    answer = internal.call_raw(vm, "internal.vm.volume.ImportEnd", volume, status)
    sys.stdout.buffer.write(answer)
    return 0 if answer.startswith(b"0\0") else 1


if __name__ == "__main__":
    sys.exit(main())
