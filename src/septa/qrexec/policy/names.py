"""The lexical rules of qrexec calls: service names, arguments and qube names.

Service names and arguments use only ``[A-Za-z0-9_.+-]`` (a service name no ``+``, since
the first ``+`` separates the argument) and are at most 64 bytes each. A call breaking
these rules is refused before the policy is consulted.
"""

from __future__ import annotations

import re
import string

from .errors import RequestError

MAX_NAME_BYTES = 64
CALL_CHARS = frozenset(string.ascii_letters + string.digits + "_.+-")
SERVICE_CHARS = CALL_CHARS - {"+"}

_QUBE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,30}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TAG = re.compile(r"[A-Za-z0-9_.:-]+")
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def _bad_chars(text: str, allowed: frozenset[str]) -> str:
    return "".join(sorted({c for c in text if c not in allowed}))


def service_problem(service: str) -> str | None:
    """Why ``service`` cannot name a qrexec service, or None if it can."""
    if not service:
        return "empty service name"
    bad = _bad_chars(service, SERVICE_CHARS)
    if bad:
        return f"service name {service!r} contains invalid characters {bad!r}"
    if len(service.encode()) > MAX_NAME_BYTES:
        return f"service name {service!r} is longer than {MAX_NAME_BYTES} bytes"
    return None


def argument_problem(argument: str) -> str | None:
    """Why ``argument`` (without its leading ``+``) is not a valid argument, or None."""
    bad = _bad_chars(argument, CALL_CHARS)
    if bad:
        return f"argument {argument!r} contains invalid characters {bad!r}"
    if len(argument.encode()) > MAX_NAME_BYTES:
        return f"argument {argument!r} is longer than {MAX_NAME_BYTES} bytes"
    return None


def check_call(service: str, argument: str) -> None:
    """Raise :class:`RequestError` unless ``service`` and ``argument`` are well-formed."""
    problem = service_problem(service) or argument_problem(argument)
    if problem:
        raise RequestError(problem)


def split_call(call: str) -> tuple[str, str]:
    """``SERVICE+ARG`` as (service, argument); no ``+`` means an empty argument."""
    service, _, argument = call.partition("+")
    return service, argument


def is_qube_name(text: str) -> bool:
    """Whether ``text`` has the form of a qube name (a letter, then ``[A-Za-z0-9_.-]``)."""
    return _QUBE_NAME.fullmatch(text) is not None


def is_uuid(text: str) -> bool:
    """Whether ``text`` is a uuid in its canonical 8-4-4-4-12 form."""
    return _UUID.fullmatch(text) is not None


def is_tag(text: str) -> bool:
    """Whether ``text`` has the form of a tag."""
    return _TAG.fullmatch(text) is not None


def is_type_name(text: str) -> bool:
    """Whether ``text`` has the form of a qube class name (AppVM, TemplateVM, ...)."""
    return _TYPE.fullmatch(text) is not None


def is_user_name(text: str) -> bool:
    """Whether ``text`` may name the user a service runs as."""
    return _USER.fullmatch(text) is not None and len(text) <= 32
