"""What a file copy will send, checked before it starts (Qubes' ``qubes-fs-tree-check``).

:func:`scan` walks the paths as :class:`~septa.agent.qfile_pack.Packer` will, adds up
the bytes to send (for the progress), tells whether every name is safe to display (if
not, the copy must ask for ``qubes.Filecopy+allow-all-names``, which the policy may
refuse), and refuses at once what no receiver would take: ``.``, ``..``, ``/`` or an
empty argument, and symbolic links that point out of the copied tree.
"""

from __future__ import annotations

import os
import stat

from .qfile_names import (
    ALLOW_NON_CANONICAL_SYMLINKS,
    ALLOW_UNSAFE_CHARACTERS,
    safe_for_display,
    validate_symlink,
)
from .qfile_pack import CopyError


def _escaped(path: bytes) -> str:
    return repr(os.fsdecode(path))


def scan(paths: list[str], ignore_symlinks: bool = False) -> tuple[int, bool]:
    """(bytes to send, whether all names are safe to display); :class:`CopyError` for
    a path that cannot be copied."""
    total = 0
    safe = True
    for path in paths:
        if path in ("", ".", ".."):
            raise CopyError(f"Refusing to copy {path!r}: try operating from the "
                            "parent directory" if path else "Empty string is not a valid path")
        directory, base = os.path.split(path.rstrip("/") or "/")
        if base in ("", ".", ".."):
            raise CopyError(f"Refusing to copy path with basename empty, ., or ..: {path!r}")
        size, ok = _walk(os.fsencode(base), os.fsencode(os.path.join(directory or ".", base)),
                         ignore_symlinks)
        total += size
        safe = safe and ok
    return total, safe


def _walk(name: bytes, path: bytes, ignore_symlinks: bool) -> tuple[int, bool]:
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise CopyError(f"stat {_escaped(path)}: {exc.strerror}") from None
    mode = st.st_mode
    component = name.rsplit(b"/", 1)[-1]
    if stat.S_ISLNK(mode):
        if ignore_symlinks:
            return 0, True
        try:
            target = os.readlink(path)
        except OSError as exc:
            raise CopyError(f"readlink {_escaped(path)}: {exc.strerror}") from None
        flags = ALLOW_UNSAFE_CHARACTERS | ALLOW_NON_CANONICAL_SYMLINKS
        if validate_symlink(name, target, flags):
            raise CopyError(f"Refusing to copy unsafe symbolic link {_escaped(path)}")
        return len(target), safe_for_display(component) and safe_for_display(target)
    if stat.S_ISREG(mode):
        return st.st_size, safe_for_display(component)
    if not stat.S_ISDIR(mode):
        return 0, True  # not sent
    total, safe = 0, safe_for_display(component)
    try:
        entries = os.listdir(path)
    except OSError as exc:
        raise CopyError(f"opendir {_escaped(path)}: {exc.strerror}") from None
    for entry in entries:
        size, ok = _walk(name + b"/" + entry, path + b"/" + entry, ignore_symlinks)
        total += size
        safe = safe and ok
    return total, safe
