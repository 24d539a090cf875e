"""Which file names and symbolic links a file copy may carry (Qubes' rules, both sides).

Names in the stream are relative paths (bytes) such as ``dir/sub/file``. They must be
canonical: not empty, not absolute, no ``.`` or ``..`` component, no empty component
(``a//b``, trailing ``/``). Unless all names are allowed (``qubes.Filecopy+allow-all-names``),
every character must be printable ASCII or valid UTF-8 that is safe to display: no
control, format, private-use, unassigned or separator characters, and only the
bidirectional classes of left-to-right text and neutrals. (Qubes keeps an allowlist
generated from Unicode data, which also excludes some scripts; this check uses the
interpreter's Unicode database and does not look at scripts.)

A symbolic link must stay inside the top-level directory it was sent in: ``a/b`` may
point to ``c`` (``a/c``) but not to ``../c``; ``a/b/c`` may point to ``../d``; the
target may not be absolute, and a top-level entry may not be a link at all.

The functions return 0 or a negative errno value, as Qubes' ``qubes_pure_*`` do.
"""

from __future__ import annotations

import errno

#: Flags (the values of Qubes' ``QubesFilenameValidationFlags``).
ALLOW_UNSAFE_CHARACTERS = 1 << 0
ALLOW_NON_CANONICAL_SYMLINKS = 1 << 1
ALLOW_UNSAFE_SYMLINKS = 1 << 2
ALLOW_NON_CANONICAL_PATHS = 1 << 3
ALLOW_TRAILING_SLASH = 1 << 4

#: Bidirectional classes of characters that are safe to display.
_SAFE_BIDI = frozenset({"L", "WS", "ON", "ET", "ES", "CS"})
#: General categories that are never safe: controls, format characters (bidi overrides,
#: zero-width joiners), surrogates, private use, unassigned, line/paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def char_safe_for_display(char: str) -> bool:
    """Whether one (non-ASCII) character is safe to display."""
    import unicodedata

    return (unicodedata.category(char) not in _UNSAFE_CATEGORIES
            and unicodedata.bidirectional(char) in _SAFE_BIDI)


def safe_for_display(text: bytes) -> bool:
    """Whether ``text`` is printable ASCII, or UTF-8 whose characters are safe to display."""
    if all(0x20 <= byte <= 0x7E for byte in text):
        return True
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(0x20 <= ord(char) <= 0x7E or (ord(char) > 0x7F and char_safe_for_display(char))
               for char in decoded)


def _validate_path(name: bytes, leading_dotdot: int, flags: int) -> int:
    """The number of components other than ``..`` (>= 0), or a negative errno value.
    At most ``leading_dotdot`` ``..`` components may come first; none later."""
    non_canonical = bool(flags & ALLOW_NON_CANONICAL_PATHS)
    if not name:
        return 0 if non_canonical else -errno.ENOLINK
    if name.startswith(b"/"):
        return -errno.ENOLINK
    if b"\0" in name:
        return -errno.EILSEQ
    components = name.split(b"/")
    trailing_slash = components[-1] == b""
    if trailing_slash:
        if not flags & ALLOW_TRAILING_SLASH:
            return -errno.EILSEQ
        components.pop()
    count = 0
    for component in components:
        if component in (b"", b"."):
            if not non_canonical:
                return -errno.EILSEQ
        elif component == b"..":
            if leading_dotdot < 1:
                return -errno.ENOLINK
            leading_dotdot -= 1
        else:
            leading_dotdot = 0
            count += 1
    if not flags & ALLOW_UNSAFE_CHARACTERS and not safe_for_display(name):
        return -errno.EILSEQ
    return count


def validate_file_name(name: bytes, flags: int = 0) -> int:
    """0 if ``name`` may be the name of a file or directory, else ``-EILSEQ``."""
    return 0 if _validate_path(name, 0, flags) > 0 else -errno.EILSEQ


def validate_symlink(name: bytes, target: bytes, flags: int = 0) -> int:
    """0 if a link ``name`` -> ``target`` is safe to create, else a negative errno value
    (``-EILSEQ`` for a bad name, ``-ENOLINK`` for a link that would leave its tree)."""
    depth = _validate_path(name, 0, flags)
    if depth < 0:
        return -errno.EILSEQ
    if flags & ALLOW_UNSAFE_SYMLINKS:
        return 0 if depth > 0 else -errno.ENOLINK
    if flags & ALLOW_NON_CANONICAL_SYMLINKS:
        flags |= ALLOW_NON_CANONICAL_PATHS
    if depth < 2:
        return -errno.ENOLINK
    result = _validate_path(target, depth - 2, flags | ALLOW_TRAILING_SLASH)
    return result if result < 0 else 0


def display(name: bytes) -> str:
    """``name`` made harmless for a terminal: bytes outside printable ASCII, and ``"``,
    become ``_`` (what a sender prints of a name the receiver sent)."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x22 else "_" for b in name)
