"""Errors of the policy engine: a policy that cannot be used, and a refused request."""

from __future__ import annotations

from pathlib import PurePath


class PolicyError(Exception):
    """The policy as a whole cannot be used; every call is then denied (fail closed)."""


class PolicySyntaxError(PolicyError):
    """A policy file does not parse; the message names the file and the line."""

    def __init__(self, path: PurePath | str | None, lineno: int | None, message: str) -> None:
        self.path = str(path) if path is not None else "<policy>"
        self.lineno = lineno
        self.message = message
        where = self.path if lineno is None else f"{self.path}:{lineno}"
        super().__init__(f"{where}: {message}")


class RequestError(ValueError):
    """A call refused before the policy is consulted (a malformed service name or argument)."""
