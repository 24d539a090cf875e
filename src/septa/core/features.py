"""Features and tags of a qube: string settings and names that fire events on change.

Features are how qubes and tools negotiate capabilities (``os``, ``qrexec``,
``service.*`` ...). Lookups may fall back to the template chain, the netvm chain or
dom0, as Qubes' ``CheckWith*`` calls do.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from septa.core.errors import (
    QubesFeatureNotFoundError,
    QubesTagNotFoundError,
    QubesValueError,
)

if TYPE_CHECKING:
    from septa.core.vm import BaseVM

_FEATURE = re.compile(r"\A[a-zA-Z0-9_.+-]{1,128}\Z")
_TAG = re.compile(r"\A[a-zA-Z0-9_-]{1,128}\Z")


def normalize_feature_value(value: Any) -> str:
    """Qubes' convention: True is ``'1'``, False and None are ``''``, the rest ``str()``."""
    if value is True:
        return "1"
    if value is False or value is None:
        return ""
    text = str(value)
    if any((ord(c) < 0x20 and c not in "\t") or ord(c) == 0x7F for c in text):
        raise QubesValueError("Feature value contains control characters")
    return text


def validate_feature_name(name: str) -> str:
    if not _FEATURE.match(name):
        raise QubesValueError(f"Invalid feature name: {name!r}")
    return name


def validate_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise QubesValueError(f"Invalid tag name {tag!r}: use letters, digits, '-' and '_'")
    return tag


class Features(MutableMapping[str, str]):
    """The features of one qube."""

    def __init__(self, vm: BaseVM) -> None:
        self.vm = vm
        self._data: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        try:
            return self._data[name]
        except KeyError:
            raise QubesFeatureNotFoundError(self.vm, name) from None

    def __setitem__(self, name: str, value: Any) -> None:
        validate_feature_name(name)
        text = normalize_feature_value(value)
        old = self._data.get(name)
        self.vm.fire_event(f"domain-feature-pre-set:{name}", feature=name, value=text,
                           oldvalue=old)
        self._data[name] = text
        self.vm.fire_event(f"domain-feature-set:{name}", feature=name, value=text, oldvalue=old)

    def __delitem__(self, name: str) -> None:
        if name not in self._data:
            raise QubesFeatureNotFoundError(self.vm, name)
        self.vm.fire_event(f"domain-feature-pre-delete:{name}", feature=name)
        del self._data[name]
        self.vm.fire_event(f"domain-feature-delete:{name}", feature=name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def load(self, name: str, value: str) -> None:
        self._data[name] = value

    def check_with(self, name: str, *, template: bool = False, netvm: bool = False,
                   adminvm: bool = False) -> str:
        """The value from this qube, else from its template / netvm chain, else from dom0."""
        for holder in self._chain(template=template, netvm=netvm, adminvm=adminvm):
            if name in holder.features._data:
                return holder.features._data[name]
        raise QubesFeatureNotFoundError(self.vm, name)

    def _chain(self, *, template: bool, netvm: bool, adminvm: bool) -> Iterator[BaseVM]:
        yield self.vm
        relation = "template" if template else "netvm" if netvm else None
        seen = {self.vm.name}
        current: Any = self.vm
        while relation is not None:
            try:
                current = current.get(relation) if relation in current.property_defs else None
            except AttributeError:
                current = None
            if current is None or current.name in seen:
                break
            seen.add(current.name)
            yield current
        if adminvm:
            yield self.vm.app.domains["dom0"]


class Tags:
    """The tags of one qube: a set of names."""

    def __init__(self, vm: BaseVM) -> None:
        self.vm = vm
        self._data: set[str] = set()

    def __contains__(self, tag: object) -> bool:
        return tag in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def add(self, tag: str) -> None:
        validate_tag(tag)
        if tag in self._data:
            return
        self.vm.fire_event(f"domain-tag-pre-add:{tag}", tag=tag)
        self._data.add(tag)
        self.vm.fire_event(f"domain-tag-add:{tag}", tag=tag)

    def remove(self, tag: str) -> None:
        if tag not in self._data:
            raise QubesTagNotFoundError(self.vm, tag)
        self._data.discard(tag)
        self.vm.fire_event(f"domain-tag-delete:{tag}", tag=tag)

    def load(self, tag: str) -> None:
        self._data.add(tag)
