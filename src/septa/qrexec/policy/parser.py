"""The current (Qubes 4.1+) policy format, from text to rules and directives.

Each non-comment line is either a rule::

    service  +argument|*  source  target  allow|deny|ask  [param=value ...]

or a directive: ``!include PATH``, ``!include-dir DIR``, ``!include-service SERVICE
+ARG|* FILE`` (FILE in the 4.0 format) or ``!compat-4.0``. Comments start with ``#``
(possibly after blanks); there are no inline comments. This module reads no files: the
directives are returned for :mod:`.loader` to follow.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PolicySyntaxError
from .rules import Rule, build_rule, parse_service_column


@dataclass(frozen=True, slots=True)
class Include:
    """``!include PATH``: a file in the current format."""

    path: str
    origin: str
    lineno: int | None


@dataclass(frozen=True, slots=True)
class IncludeDir:
    """``!include-dir DIR``: the ``*.policy`` files of a directory."""

    path: str
    origin: str
    lineno: int | None


@dataclass(frozen=True, slots=True)
class IncludeService:
    """``!include-service SERVICE ARG FILE``: a 4.0-format file for one service."""

    service: str | None
    argument: str | None
    path: str
    origin: str
    lineno: int | None


@dataclass(frozen=True, slots=True)
class Compat40:
    """``!compat-4.0``: the 4.0 policy directory, read at this point."""

    origin: str
    lineno: int | None


Directive = Include | IncludeDir | IncludeService | Compat40
Item = Rule | Directive


def parse_text(text: str, path: str) -> list[Item]:
    """All rules and directives of one file, in order; PolicySyntaxError at the first error."""
    items: list[Item] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        item = parse_line(line, path, lineno)
        if item is not None:
            items.append(item)
    return items


def parse_line(line: str, path: str, lineno: int | None) -> Item | None:
    """One line: a rule, a directive, or None for a blank line or a comment."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    if line.startswith("!"):
        return _directive(line.split(), path, lineno)
    fields = line.split()
    if len(fields) < 5:
        raise PolicySyntaxError(path, lineno, "wrong number of fields")
    service, argument, source, target, action, *params = fields
    return build_rule(
        service, argument, source, target, action, params, path=path, lineno=lineno
    )


def _directive(words: list[str], path: str, lineno: int | None) -> Directive:
    name, params = words[0], words[1:]
    expected = {"!include": 1, "!include-dir": 1, "!include-service": 3, "!compat-4.0": 0}
    if name not in expected:
        raise PolicySyntaxError(path, lineno, f"invalid directive {name!r}")
    if len(params) != expected[name]:
        raise PolicySyntaxError(path, lineno, f"invalid number of params for {name}")
    if name == "!include":
        return Include(params[0], path, lineno)
    if name == "!include-dir":
        return IncludeDir(params[0], path, lineno)
    if name == "!include-service":
        service, argument = parse_service_column(params[0], params[1], path, lineno)
        return IncludeService(service, argument, params[2], path, lineno)
    return Compat40(path, lineno)
