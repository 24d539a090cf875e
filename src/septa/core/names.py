"""Qube name rules, as Qubes has them: a letter, then ``[a-zA-Z0-9_.-]``, at most 31."""

from __future__ import annotations

import re

from septa.core.errors import QubesValueError

_VALID = re.compile(r"\A[a-zA-Z][a-zA-Z0-9_.-]*\Z")
RESERVED = frozenset({"none", "default", "Domain-0"})


def validate_name(name: str) -> str:
    """Return ``name`` if it may name a qube; raise :class:`QubesValueError` saying why not."""
    if not name:
        raise QubesValueError("VM name cannot be empty")
    if len(name) > 31:
        raise QubesValueError("VM name must be shorter than 32 characters")
    if name[0] in "0123456789_.-":
        raise QubesValueError("VM name cannot start with hyphen, underscore, dot or numbers")
    if not _VALID.match(name):
        raise QubesValueError("VM name contains illegal characters")
    if name in RESERVED:
        raise QubesValueError(f"VM name cannot be {name!r}")
    if name.endswith("-dm"):
        raise QubesValueError("VM name cannot end with -dm")
    return name
