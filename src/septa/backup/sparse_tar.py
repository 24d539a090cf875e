"""A tar archive of one seekable file or block device with its zero regions left out:
the pax "GNU sparse 1.0" format that Qubes' own ``qubes.tarwriter`` writes for volumes,
which GNU tar extracts as a sparse file.

GNU tar cannot archive the content of a block device (an LVM thin volume), and finds
holes only in regular files, so volumes that are devices come through here. The map of
data regions is found by reading the device (aligned 64 KiB blocks of zeros are holes),
and must precede the data in the archive: the source is read twice.
"""

from __future__ import annotations

import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

from septa.backup.outer_tar import BLOCK, entry_trailer

GRAIN = 64 * 1024
READ = 1 << 20


def device_size(path: Path) -> int:
    """Size in bytes of a regular file or block device."""
    with path.open("rb") as source:
        return source.seek(0, os.SEEK_END)


def data_map(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of the regions of *path* that are not all zeros, at 64 KiB
    granularity; the last entry always reaches the end (possibly with length 0), as GNU
    tar needs to restore the size."""
    regions: list[tuple[int, int]] = []
    zero_read = bytes(READ)
    zero_grain = bytes(GRAIN)
    start: int | None = None
    offset = 0
    with path.open("rb", buffering=0) as source:
        while block := source.read(READ):
            if block == zero_read[:len(block)]:
                grains = [True] * (-(-len(block) // GRAIN))
            else:
                grains = [block[i:i + GRAIN] == zero_grain[:len(block[i:i + GRAIN])]
                          for i in range(0, len(block), GRAIN)]
            for index, is_zero in enumerate(grains):
                here = offset + index * GRAIN
                if is_zero and start is not None:
                    regions.append((start, here - start))
                    start = None
                elif not is_zero and start is None:
                    start = here
            offset += len(block)
    if start is not None:
        regions.append((start, offset - start))
    elif not regions or regions[-1][0] + regions[-1][1] < offset:
        regions.append((offset, 0))
    return regions


def sparse_archive(name: str, path: Path, *, mode: int = 0o644,
                   mtime: float | None = None) -> Iterator[bytes]:
    """The archive's bytes, in pieces: pax header, map, data regions, end blocks."""
    regions = data_map(path)
    size = regions[-1][0] + regions[-1][1]
    text = f"{len(regions)}\n" + "".join(f"{off}\n{length}\n" for off, length in regions)
    sparse_map = text.encode() + bytes(-len(text) % BLOCK)
    stored = len(sparse_map) + sum(length for _, length in regions)
    directory, _, base = name.rpartition("/")
    info = tarfile.TarInfo(f"{directory + '/' if directory else ''}GNUSparseFile.0/{base}")
    info.size = stored
    info.mode = mode
    info.mtime = int(time.time() if mtime is None else mtime)
    info.uname = info.gname = "root"
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                        "GNU.sparse.name": name, "GNU.sparse.realsize": str(size)}
    header = info.tobuf(tarfile.PAX_FORMAT)
    yield header + sparse_map
    with path.open("rb", buffering=0) as source:
        for offset, length in regions:
            source.seek(offset)
            left = length
            while left:
                block = source.read(min(READ, left))
                if not block:
                    raise OSError(f"{path} ended while being archived")
                left -= len(block)
                yield block
    yield entry_trailer(len(header), stored)
