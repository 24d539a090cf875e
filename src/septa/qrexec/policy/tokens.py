"""Qube specifications in policy lines: ``@anyvm``, ``@tag:T``, plain names and the rest.

A token is parsed once, for one of three places, and only the kinds that make sense
there are accepted:

========================  ======  ======  ==========================
token                     source  target  ``target=`` / ``default_target=``
========================  ======  ======  ==========================
plain name, ``uuid:U``    yes     yes     yes
``@adminvm`` (``dom0``)   yes     yes     yes
``@anyvm``, ``*``         yes     yes     no
``@default``              no      yes     no
``@dispvm``               no      yes     yes
``@dispvm:NAME``          yes     yes     yes
``@dispvm:@tag:T``        yes     yes     no
``@tag:T``, ``@type:T``   yes     yes     no
========================  ======  ======  ==========================

``@anyvm`` is any qube except dom0; ``*`` is anything, dom0 included (Qubes 4.2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import names
from .system_info import ADMINVM_UUID


class Kind(enum.Enum):
    """What a token designates."""

    NAME = "name"
    UUID = "uuid"
    ADMINVM = "@adminvm"
    ANYVM = "@anyvm"
    WILDCARD = "*"
    DEFAULT = "@default"
    DISPVM = "@dispvm"
    DISPVM_TEMPLATE = "@dispvm:"
    DISPVM_TAG = "@dispvm:@tag:"
    TAG = "@tag:"
    TYPE = "@type:"


class Place(enum.Enum):
    """Where in a policy line a token stands."""

    SOURCE = "source"
    TARGET = "target"
    REDIRECT = "redirect"


_ALLOWED: dict[Place, frozenset[Kind]] = {
    Place.SOURCE: frozenset(Kind) - {Kind.DEFAULT, Kind.DISPVM},
    Place.TARGET: frozenset(Kind),
    Place.REDIRECT: frozenset(
        {Kind.NAME, Kind.UUID, Kind.ADMINVM, Kind.DISPVM, Kind.DISPVM_TEMPLATE}
    ),
}

_EXACT = {
    "@adminvm": Kind.ADMINVM,
    "dom0": Kind.ADMINVM,
    "uuid:" + ADMINVM_UUID: Kind.ADMINVM,
    "@anyvm": Kind.ANYVM,
    "*": Kind.WILDCARD,
    "@default": Kind.DEFAULT,
    "@dispvm": Kind.DISPVM,
}

# longest prefix first: "@dispvm:@tag:" before "@dispvm:"
_PREFIXES = (Kind.DISPVM_TAG, Kind.DISPVM_TEMPLATE, Kind.TAG, Kind.TYPE)


@dataclass(frozen=True, slots=True)
class Token:
    """One parsed qube specification; ``value`` is the name, uuid, tag or type it carries."""

    kind: Kind
    value: str
    text: str

    def __str__(self) -> str:
        return self.text


def parse_token(text: str, place: Place) -> Token:
    """Parse ``text`` found at ``place``; ValueError (with the reason) if it is not valid."""
    kind, value = _classify(text)
    if kind not in _ALLOWED[place]:
        raise ValueError(f"{text!r} cannot be used as {_PLACE_NAMES[place]}")
    return Token(kind, value, text)


_PLACE_NAMES = {
    Place.SOURCE: "the source",
    Place.TARGET: "the target",
    Place.REDIRECT: "a target= or default_target= value",
}


def _classify(text: str) -> tuple[Kind, str]:
    if not text:
        raise ValueError("empty qube specification")
    exact = _EXACT.get(text)
    if exact is not None:
        return exact, ""
    if text.startswith("@"):
        for kind in _PREFIXES:
            if text.startswith(kind.value):
                return kind, _check_value(kind, text, text[len(kind.value) :])
        raise ValueError(f"unknown token {text!r}")
    return _plain(text)


def _plain(text: str) -> tuple[Kind, str]:
    if text.startswith("uuid:"):
        if not names.is_uuid(text[5:]):
            raise ValueError(f"invalid uuid in {text!r}")
        return Kind.UUID, text[5:].lower()
    if not names.is_qube_name(text):
        raise ValueError(f"invalid qube name {text!r}")
    return Kind.NAME, text


def _check_value(kind: Kind, text: str, value: str) -> str:
    if not value:
        raise ValueError(f"empty value in {text!r}")
    if kind in (Kind.TAG, Kind.DISPVM_TAG):
        ok = names.is_tag(value)
    elif kind is Kind.TYPE:
        ok = names.is_type_name(value)
    else:  # @dispvm:NAME or @dispvm:uuid:UUID
        ok = names.is_qube_name(value) or (
            value.startswith("uuid:") and names.is_uuid(value[5:])
        )
    if not ok:
        raise ValueError(f"invalid value {value!r} in {text!r}")
    return value
