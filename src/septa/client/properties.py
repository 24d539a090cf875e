"""Properties of a qube or of the whole system, read and written over the Admin API.

Values travel as ``default=True|False type=<type> <value>``; :class:`PropertyValue`
keeps the three parts. ``GetAll`` returns one such line per property, prefixed by the
property name, with backslash and newline escaped. :class:`Properties` wraps the
``<prefix>{List,Get,GetAll,GetDefault,Help,Set,Reset}`` calls of one owner (a qube,
with prefix ``admin.vm.property.``, or the system, with ``admin.property.``).
"""

from __future__ import annotations

import re
from typing import NamedTuple, Protocol

from .errors import (
    QubesDaemonCommunicationError,
    QubesNoSuchPropertyError,
    QubesPropertyUnsetError,
)

#: The value types the wire protocol knows.
PROPERTY_TYPES = frozenset({"str", "int", "bool", "vm", "label"})
#: Types whose empty value means "no value at all".
_SCALAR_TYPES = frozenset({"int", "bool"})
#: Types whose empty value means None (no qube / no label).
_REFERENCE_TYPES = frozenset({"vm", "label"})


class Caller(Protocol):
    """Something that can make an Admin API call addressed to itself."""

    def call_self(
        self, method: str, arg: str | None = None, payload: bytes | None = None
    ) -> bytes: ...


class PropertyValue(NamedTuple):
    """One property value as the daemon reported it."""

    is_default: bool
    type: str
    text: str

    @property
    def has_value(self) -> bool:
        """False for an int or bool property that currently has no value."""
        return not (self.text == "" and self.type in _SCALAR_TYPES)

    @property
    def is_none(self) -> bool:
        """True for a qube or label reference that is empty (None)."""
        return self.text == "" and self.type in _REFERENCE_TYPES

    def as_int(self) -> int:
        """The value of an int property."""
        if not self.has_value:
            raise QubesPropertyUnsetError("property has no value")
        return int(self.text)

    def as_bool(self) -> bool:
        """The truth value: a bool property's value, or whether a str/ref is non-empty."""
        if not self.has_value:
            raise QubesPropertyUnsetError("property has no value")
        if self.type == "bool":
            return self.text == "True"
        if self.type == "int":
            return int(self.text) != 0
        return self.text != ""

    def display(self) -> str:
        """The value as Qubes' tools print it (``None`` for an empty reference)."""
        return "None" if self.is_none else self.text


def _parse_typed(type_field: bytes, value: bytes, is_default: bool) -> PropertyValue:
    type_text = type_field.decode("ascii", "replace")
    if not type_text.startswith("type="):
        raise QubesDaemonCommunicationError("Invalid type prefix received: %s", type_text)
    prop_type = type_text[len("type=") :]
    if prop_type not in PROPERTY_TYPES:
        raise QubesDaemonCommunicationError("Received invalid value type: %s", prop_type)
    text = value.decode("utf-8", "replace")
    return PropertyValue(is_default=is_default, type=prop_type, text=text)


def parse_property(data: bytes) -> PropertyValue:
    """Parse ``default=X type=T value`` (the answer of ``...property.Get``)."""
    parts = data.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"default="):
        raise QubesDaemonCommunicationError("Invalid property value received from septad")
    value = parts[2] if len(parts) == 3 else b""
    return _parse_typed(parts[1], value, parts[0] == b"default=True")


def parse_default(data: bytes) -> PropertyValue | None:
    """Parse ``type=T value`` (the answer of ``...property.GetDefault``); None if no default."""
    if not data:
        return None
    type_field, _, value = data.partition(b" ")
    return _parse_typed(type_field, value, True)


_ESCAPE = re.compile(rb"\\(.)")


def _unescape_char(match: re.Match[bytes]) -> bytes:
    return b"\n" if match.group(1) == b"n" else match.group(1)


def unescape(line: bytes) -> bytes:
    """Undo the ``\\\\`` / ``\\n`` escaping of a ``GetAll`` line."""
    if b"\\" not in line:
        return line
    return _ESCAPE.sub(_unescape_char, line)


class GetAllAnswer:
    """The answer of ``...property.GetAll``, parsed only as far as it is read.

    A listing tool reads a handful of properties of each of many qubes, so values are
    looked up in the raw bytes on demand instead of all being parsed up front.
    """

    def __init__(self, data: bytes) -> None:
        # A leading newline makes every line start with "\n<name> ".
        self._data = b"\n" + data

    def lookup(self, name: str) -> PropertyValue | None:
        """The value of one property, None if the answer does not have it."""
        start = self._data.find(b"\n" + name.encode() + b" ")
        if start < 0:
            return None
        start += len(name) + 2
        end = self._data.find(b"\n", start)
        line = self._data[start:] if end < 0 else self._data[start:end]
        return parse_property(unescape(line))

    def names(self) -> list[str]:
        """The property names, in the daemon's order."""
        return [line.split(b" ", 1)[0].decode() for line in self._data.split(b"\n") if line]

    def parse_all(self) -> dict[str, PropertyValue]:
        """Every property, parsed."""
        result: dict[str, PropertyValue] = {}
        for line in self._data.split(b"\n"):
            if not line:
                continue
            name, sep, rest = line.partition(b" ")
            if not sep:
                raise QubesDaemonCommunicationError("Invalid GetAll line received from septad")
            result[name.decode()] = parse_property(unescape(rest))
        return result


def parse_get_all(data: bytes) -> dict[str, PropertyValue]:
    """Parse the answer of ``...property.GetAll`` into name -> value."""
    return GetAllAnswer(data).parse_all()


def encode_value(value: object) -> bytes:
    """The payload that sets a property to ``value`` (None clears a reference)."""
    if value is None:
        return b""
    return str(value).encode()


class Properties:
    """The properties of one owner (a qube or the system)."""

    def __init__(self, owner: Caller, prefix: str) -> None:
        self._owner = owner
        self._prefix = prefix
        self._names: list[str] | None = None
        self._all: GetAllAnswer | None = None
        self._parsed: dict[str, PropertyValue] = {}

    def _call(self, verb: str, arg: str | None = None, payload: bytes | None = None) -> bytes:
        return self._owner.call_self(self._prefix + verb, arg, payload)

    def _forget_values(self) -> None:
        self._all = None
        self._parsed = {}

    def clear_cache(self) -> None:
        """Forget every value and name read so far."""
        self._names = None
        self._forget_values()

    @property
    def is_cached(self) -> bool:
        """Whether all values were read at once (:meth:`load_all` / :meth:`fetch_all`)."""
        return self._all is not None

    def names(self) -> list[str]:
        """Names of all properties (``List``, unless all values were read), daemon's order."""
        if self._names is None:
            if self._all is not None:
                self._names = self._all.names()
            else:
                data = self._call("List")
                self._names = [n for n in data.decode().split("\n") if n]
        return list(self._names)

    def load_all(self) -> None:
        """Read every property with one ``GetAll`` call; values are parsed when read."""
        self._all = GetAllAnswer(self._call("GetAll"))
        self._parsed = {}

    def fetch_all(self) -> dict[str, PropertyValue]:
        """Read every property with one ``GetAll`` call and return them all."""
        self.load_all()
        assert self._all is not None
        self._parsed = self._all.parse_all()
        return dict(self._parsed)

    def cached(self, name: str) -> PropertyValue | None:
        """The value read by :meth:`load_all`, or None (not read, or no such property)."""
        if self._all is None:
            return None
        value = self._parsed.get(name)
        if value is None:
            value = self._all.lookup(name)
            if value is not None:
                self._parsed[name] = value
        return value

    def get(self, name: str) -> PropertyValue:
        """The current value of one property (from what was read, if all were)."""
        if self._all is not None:
            value = self.cached(name)
            if value is None:
                raise QubesNoSuchPropertyError("Invalid property '%s'", name)
            return value
        return parse_property(self._call("Get", name))

    def is_default(self, name: str) -> bool:
        """Whether the property currently has its default value."""
        return self.get(name).is_default

    def get_default(self, name: str) -> PropertyValue | None:
        """The value the property would have if reset, or None if it has no default."""
        return parse_default(self._call("GetDefault", name))

    def help(self, name: str) -> str:
        """The daemon's description of a property."""
        return self._call("Help", name).decode()

    def set(self, name: str, value: object) -> None:
        """Set a property; ``value`` is sent as its string form (None clears a reference)."""
        self._call("Set", name, encode_value(value))
        self._forget_values()

    def reset(self, name: str) -> None:
        """Reset a property to its default."""
        self._call("Reset", name)
        self._forget_values()
