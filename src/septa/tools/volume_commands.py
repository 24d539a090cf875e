"""The ``qvm-volume`` commands that act on one volume: info, config, resize, revert,
import and clear, with Qubes' output and messages.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable
from typing import BinaryIO

from septa.client.errors import QubesException, QubesNoSuchPropertyError, StoragePoolException
from septa.client.volumes import SETTABLE, Volume

from .sizes import parse_size
from .table import print_table


def _keep(volume: Volume) -> str:
    value = volume.revisions_to_keep
    return "" if value is None else str(value)


#: What ``info`` shows, in Qubes' order.
INFO_ITEMS: dict[str, Callable[[Volume], str]] = {
    "pool": lambda v: v.pool,
    "vid": lambda v: v.vid,
    "rw": lambda v: str(v.rw),
    "source": lambda v: v.source,
    "save_on_stop": lambda v: str(v.save_on_stop),
    "snap_on_start": lambda v: str(v.snap_on_start),
    "size": lambda v: str(v.size),
    "usage": lambda v: str(v.usage),
    "revisions_to_keep": _keep,
    "ephemeral": lambda v: str(v.ephemeral),
}


def info(volume: Volume, prop: str | None) -> None:
    """Print all facts about the volume and its revisions, or only ``prop``."""
    if prop == "revisions":
        for revision in volume.revisions:
            print(revision)
    elif prop == "is_outdated":
        print(volume.is_outdated())
    elif prop in INFO_ITEMS:
        print(INFO_ITEMS[prop](volume))
    elif prop is not None:
        raise StoragePoolException("No such property: %s", prop)
    else:
        rows = []
        for item, get in INFO_ITEMS.items():
            value = get(volume)
            if item == "revisions_to_keep" and value == "-1":
                value = "-1 (snapshot disabled)"
            rows.append((item, value))
        rows.append(("is_outdated", str(volume.is_outdated())))
        print_table(rows)
        revisions = volume.revisions
        if revisions:
            print("List of available revisions (for revert):")
            for revision in revisions:
                print("  " + revision)
        else:
            print("List of available revisions (for revert): none")


def config(volume: Volume, prop: str, value: str) -> None:
    """Change a volume setting (rw, revisions_to_keep, ephemeral)."""
    if prop not in SETTABLE:
        raise QubesNoSuchPropertyError("Invalid property: %s", prop)
    volume.set(prop, value)


def resize(volume: Volume, size_text: str, force: bool) -> None:
    """Resize the volume; shrinking needs ``force``."""
    size = parse_size(size_text)
    if not force and size < volume.size:
        raise StoragePoolException(
            "%s",
            f"For your own safety, shrinking of {volume.name} is disabled "
            f"({size} < {volume.size}). If you really know what you are doing, "
            "resize filesystem manually first, then use `-f` option.",
        )
    volume.resize(size)


def revert(volume: Volume, revision: str | None) -> None:
    """Revert to ``revision``, or to the newest one."""
    if not revision:
        revisions = volume.revisions
        if not revisions:
            raise StoragePoolException("No snapshots available")
        revision = revisions[-1]
    volume.revert(revision)


def _stream_size(stream: BinaryIO, what: str) -> int:
    """The size of a regular file or block device; an error for a pipe or terminal."""
    fd = stream.fileno()
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return os.fstat(fd).st_size
    if stat.S_ISBLK(mode):
        position = os.lseek(fd, 0, os.SEEK_CUR)
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, position, os.SEEK_SET)
        return size
    raise QubesException(
        "Failed to get %s size (not a file), specify it explicitly with --size, "
        "or use --no-resize option",
        what,
    )


def import_data(volume: Volume, path: str, size: int | None, no_resize: bool) -> None:
    """Replace the volume's data with the file at ``path`` ('-': standard input)."""
    if path == "-":
        _import(volume, sys.stdin.buffer, "standard input", size, no_resize)
        return
    with open(path, "rb") as stream:
        _import(volume, stream, path, size, no_resize)


def _import(volume: Volume, stream: BinaryIO, what: str, size: int | None, no_resize: bool) -> None:
    if no_resize:
        volume.import_data(stream)
    else:
        volume.import_data_with_size(stream, size or _stream_size(stream, what))


def clear(volume: Volume, force: bool) -> None:
    """Empty the volume, after confirmation unless ``force``."""
    if not force:
        print("This will empty the volume! (Data may be preserved in a revision.)")
        try:
            answer = input("Are you sure? [y/N] ")
        except EOFError:
            answer = ""
        if answer.lower() != "y":
            print("Clear cancelled.")
            return
    volume.clear_data()
