"""Mailcap files (RFC 1524): which command views a MIME type.

Read from ``$MAILCAPS`` (a ``:`` list) or else ``~/.mailcap``, ``/etc/mailcap``,
``/usr/etc/mailcap``, ``/usr/local/etc/mailcap``, in that order. An entry is
``type; view-command; flag; key=value...`` (``\\;`` is a literal ``;``, a line ending
in ``\\`` continues); ``text/*`` or ``text`` match every ``text/`` type. The first
matching entry wins whose ``test=`` command (if any) succeeds, skipping those that need
a terminal (there is none: the services run headless). In commands, ``%s`` is the file
(or URL), quoted for the shell, ``%t`` the type, ``%%`` a ``%``; a command without
``%s`` reads the file on its stdin.
"""

from __future__ import annotations

import os
import subprocess

DEFAULT_FILES = ("~/.mailcap", "/etc/mailcap", "/usr/etc/mailcap", "/usr/local/etc/mailcap")


class Entry:
    """One mailcap entry."""

    __slots__ = ("type", "command", "flags")

    def __init__(self, mime_type: str, command: str, flags: dict[str, str]) -> None:
        self.type = mime_type
        self.command = command
        self.flags = flags

    def matches(self, mime_type: str) -> bool:
        major = mime_type.split("/", 1)[0]
        return self.type in (mime_type, f"{major}/*", major)


def _fields(line: str) -> list[str]:
    fields, current, i = [], [], 0
    while i < len(line):
        char = line[i]
        if char == "\\" and i + 1 < len(line):
            current.append(line[i + 1])
            i += 2
            continue
        if char == ";":
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        i += 1
    fields.append("".join(current).strip())
    return fields


def parse(text: str) -> list[Entry]:
    """The entries of one mailcap file."""
    entries = []
    logical = ""
    for raw in text.splitlines():
        if raw.rstrip().endswith("\\") and not raw.rstrip().endswith("\\\\"):
            logical += raw.rstrip()[:-1]
            continue
        line, logical = (logical + raw).strip(), ""
        if not line or line.startswith("#"):
            continue
        fields = _fields(line)
        if len(fields) < 2 or not fields[0]:
            continue
        flags = {}
        for field in fields[2:]:
            key, _, value = field.partition("=")
            flags[key.strip().lower()] = value.strip()
        entries.append(Entry(fields[0].lower(), fields[1], flags))
    return entries


def files() -> list[str]:
    """The mailcap files to read, in order."""
    listed = os.environ.get("MAILCAPS")
    names = listed.split(":") if listed else list(DEFAULT_FILES)
    return [os.path.expanduser(name) for name in names if name]


def quote(text: str) -> str:
    """``text`` as one shell word."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def expand(command: str, target: str, mime_type: str) -> str:
    """The command with its ``%`` fields filled in."""
    for quoted in ("'%s'", '"%s"'):
        command = command.replace(quoted, "%s")
    out, i = [], 0
    while i < len(command):
        char = command[i]
        if char == "%" and i + 1 < len(command):
            code = command[i + 1]
            if code == "s":
                out.append(quote(target))
            elif code == "t":
                out.append(quote(mime_type))
            elif code == "{":
                end = command.find("}", i)
                i = end + 1 if end > 0 else len(command)
                continue
            else:
                out.append(code)
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def find(mime_type: str, target: str, paths: list[str] | None = None) -> tuple[str, bool] | None:
    """(shell command, whether it takes the file on stdin) of the first usable entry
    for ``mime_type``, or None."""
    for path in files() if paths is None else paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                entries = parse(f.read())
        except OSError:
            continue
        for entry in entries:
            if not entry.matches(mime_type.lower()) or "needsterminal" in entry.flags:
                continue
            test = entry.flags.get("test")
            if test and subprocess.run(
                    ["/bin/sh", "-c", expand(test, target, mime_type)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL).returncode != 0:
                continue
            return expand(entry.command, target, mime_type), "%s" not in entry.command
    return None
