"""``qubes.VMExec``: run the command that the service argument encodes, without a shell.

Qubes' encoding: the command's words are joined by ``+``; inside a word ``-HH`` (two
upper-case hex digits) is the byte 0xHH, ``--`` is a literal ``-``, and every other
character is one of ``[A-Za-z0-9._]``. So ``ls+--l+-2Ftmp`` runs ``ls -l /tmp``.
The service file runs :func:`main` with the argument as its only command line argument.
"""

from __future__ import annotations

import os
import sys

PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._")
HEX_DIGITS = b"0123456789ABCDEF"


class DecodeError(ValueError):
    """An argument that is not a command in Qubes' encoding."""


def decode_word(word: str) -> bytes:
    """One word of the command."""
    try:
        raw = word.encode("ascii")
    except UnicodeEncodeError:
        raise DecodeError(f"illegal characters in {word!r}") from None
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte in PLAIN:
            out.append(byte)
            i += 1
        elif byte == ord("-"):
            if raw[i + 1 : i + 2] == b"-":
                out.append(byte)
                i += 2
                continue
            digits = raw[i + 1 : i + 3]
            if len(digits) != 2 or any(d not in HEX_DIGITS for d in digits):
                raise DecodeError(f"'-' can be used only in '-HH' or '--' (in {word!r})")
            out.append(int(digits, 16))
            i += 3
        else:
            raise DecodeError(f"illegal character {chr(byte)!r} in {word!r}")
    return bytes(out)


def decode(arg: str) -> list[bytes]:
    """The command (its words) that ``arg`` encodes."""
    words = [decode_word(word) for word in arg.split("+")]
    if not words[0]:
        raise DecodeError("empty command")
    return words


def main(argv: list[str] | None = None) -> int:
    """Decode ``argv[1]`` and exec it (returns only on failure)."""
    args = sys.argv if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("qubes.VMExec: the service needs the command as its argument\n")
        return 1
    try:
        command = decode(args[1])
    except DecodeError as exc:
        sys.stderr.write(f"qubes.VMExec: cannot decode the command: {exc}\n")
        return 1
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"qubes.VMExec: cannot run {command[0]!r}: {exc}\n")
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 0  # not reached: exec does not return


if __name__ == "__main__":
    sys.exit(main())
