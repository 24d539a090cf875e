"""Typed properties with defaults, inheritance, validation and change events.

A :class:`Property` describes one setting of a qube (or of the registry itself): its
wire type (``str``, ``int``, ``bool``, ``vm``, ``label``), its default (a value, or a
function of the holder, which is how values are inherited from a template or from a
global property), a validator, and whether it may be changed after creation.
:class:`PropertyHolder` keeps only explicitly set values; everything else is derived,
so only non-default values are saved, as Qubes does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from septa.core.errors import (
    QubesLabelNotFoundError,
    QubesNoSuchPropertyError,
    QubesPropertyValueError,
    QubesValueError,
    QubesVMNotFoundError,
)
from septa.core.events import Emitter

if TYPE_CHECKING:
    from septa.core.app import Qubes


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()
WIRE_TYPES = ("str", "int", "bool", "vm", "label")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_INT = re.compile(r"\A-?[0-9]+\Z")

Validator = Callable[[Any, "Property", Any], Any]


@dataclass
class Property:
    """Definition of one property; see the module docstring."""

    name: str
    type: str = "str"
    default: Any = NO_DEFAULT
    setter: Validator | None = None
    write_once: bool = False
    computed: Callable[[Any], Any] | None = None
    allow_none: bool = True
    doc: str = ""
    clone: bool = True

    def __post_init__(self) -> None:
        assert self.type in WIRE_TYPES, self.type

    @property
    def read_only(self) -> bool:
        return self.computed is not None

    def default_value(self, holder: Any) -> Any:
        if self.default is NO_DEFAULT:
            raise AttributeError(self.name)
        if callable(self.default):
            return self.default(holder)
        return self.default


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise QubesValueError(f"Invalid literal for boolean property: {text!r}")


def serialize(value: Any) -> str:
    """The text of a value as the wire and qubes.xml carry it (empty for None)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


class PropertyHolder(Emitter):
    """An object with typed properties: a qube, or the registry's global settings."""

    property_defs: ClassVar[dict[str, Property]] = {}
    app: Qubes

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        merged: dict[str, Property] = {}
        for base in reversed(cls.__mro__[1:]):
            merged.update(getattr(base, "property_defs", {}))
        merged.update(cls.__dict__.get("own_properties", {}))
        for name in cls.__dict__.get("removed_properties", ()):
            merged.pop(name, None)
        cls.property_defs = merged

    def __init__(self) -> None:
        super().__init__()
        self._values: dict[str, Any] = {}

    @classmethod
    def declare(cls, *props: Property) -> dict[str, Property]:
        return {p.name: p for p in props}

    def property_list(self) -> list[str]:
        return sorted(self.property_defs)

    def property_def(self, name: str) -> Property:
        try:
            return self.property_defs[name]
        except KeyError:
            raise QubesNoSuchPropertyError(self, name) from None

    def property_is_default(self, name: str) -> bool:
        self.property_def(name)
        return name not in self._values

    def get(self, name: str) -> Any:
        """The value (explicit, else default); AttributeError when it has neither."""
        prop = self.property_def(name)
        if prop.computed is not None:
            return prop.computed(self)
        if name in self._values:
            return self._resolve(prop, self._values[name])
        return prop.default_value(self)

    def get_default(self, name: str) -> Any:
        prop = self.property_def(name)
        if prop.computed is not None:
            return prop.computed(self)
        return prop.default_value(self)

    def _resolve(self, prop: Property, stored: Any) -> Any:
        if prop.type == "vm" and stored is not None:
            return self.app.domains[stored]
        if prop.type == "label" and stored is not None:
            return self.app.labels[stored]
        return stored

    def parse(self, name: str, text: str) -> Any:
        """Turn wire or XML text into a typed value for ``name`` (not yet validated)."""
        prop = self.property_def(name)
        if prop.type == "str":
            return text
        if prop.type == "int":
            if text == "" and prop.allow_none:
                return None
            if not _INT.match(text):
                raise QubesPropertyValueError(self, name, text, f"{name} must be an integer")
            return int(text)
        if prop.type == "bool":
            return parse_bool(text)
        if text in ("", "None") and prop.type in ("vm", "label"):
            if not prop.allow_none:
                raise QubesPropertyValueError(self, name, text, f"{name} cannot be empty")
            return None
        if prop.type == "vm":
            try:
                return self.app.domains[text]
            except QubesVMNotFoundError:
                raise QubesPropertyValueError(
                    self, name, text, f"No such domain: {text!r}"
                ) from None
        try:
            return self.app.labels[text]
        except QubesLabelNotFoundError:
            raise QubesPropertyValueError(self, name, text, f"No such label: {text!r}") from None

    def _check_type(self, prop: Property, value: Any) -> None:
        expected = {"str": str, "int": int, "bool": bool}.get(prop.type)
        if value is None:
            if not prop.allow_none:
                raise QubesPropertyValueError(self, prop.name, value, f"{prop.name} cannot be None")
            return
        if expected is not None and (
            not isinstance(value, expected) or (expected is int and isinstance(value, bool))
        ):
            raise QubesPropertyValueError(
                self, prop.name, value, f"{prop.name} must be of type {prop.type}"
            )

    def set(self, name: str, value: Any, *, loading: bool = False) -> None:
        """Set a typed value: validate, ask pre-set handlers, store, fire ``property-set``."""
        prop = self.property_def(name)
        if prop.read_only:
            raise QubesPropertyValueError(self, name, value, f"Property {name!r} is read-only")
        if prop.write_once and name in self._values and not loading:
            raise QubesPropertyValueError(
                self, name, value, f"Property {name!r} cannot be changed once set"
            )
        self._check_type(prop, value)
        if prop.setter is not None:
            value = prop.setter(self, prop, value)
        stored = value
        if prop.type in ("vm", "label") and value is not None:
            stored = value.name
        if loading:
            self._values[name] = stored
            return
        old = self._values.get(name)
        self.fire_event(f"property-pre-set:{name}", name=name, newvalue=value, oldvalue=old)
        self._values[name] = stored
        self.fire_event(f"property-set:{name}", name=name, newvalue=value, oldvalue=old)

    def set_text(self, name: str, text: str) -> None:
        self.set(name, self.parse(name, text))

    def reset(self, name: str) -> None:
        """Drop the explicit value so the default applies again."""
        prop = self.property_def(name)
        if prop.read_only or prop.write_once:
            raise QubesPropertyValueError(self, name, None, f"Property {name!r} cannot be reset")
        if prop.default is NO_DEFAULT:
            raise QubesPropertyValueError(self, name, None, f"Property {name!r} has no default")
        old = self._values.get(name)
        self.fire_event(f"property-pre-reset:{name}", name=name, oldvalue=old)
        self._values.pop(name, None)
        self.fire_event(f"property-reset:{name}", name=name, oldvalue=old)

    def load_value(self, name: str, value: Any) -> None:
        """Store a value read from the registry file, without validation or events."""
        prop = self.property_def(name)
        self._values[name] = value.name if prop.type in ("vm", "label") and value else value

    def explicit_values(self) -> dict[str, Any]:
        """The stored (non-default) values, VM and label references as names."""
        return dict(self._values)

    def references(self, vm_name: str) -> list[str]:
        """Names of the explicitly set ``vm`` properties that point at ``vm_name``."""
        return sorted(
            name
            for name, stored in self._values.items()
            if self.property_defs[name].type == "vm" and stored == vm_name
        )
