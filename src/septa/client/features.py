"""Features of a qube: ``admin.vm.feature.{List,Get,Set,Remove,CheckWith*}``.

A feature is a string. An empty string reads as false; an absent feature is different
from both. Setting ``True`` stores ``"1"``, setting ``False`` stores ``""``.
"""

from __future__ import annotations

from collections.abc import Iterator

from .errors import QubesFeatureNotFoundError
from .properties import Caller


def encode_feature(value: object) -> bytes:
    """The payload that sets a feature to ``value``."""
    if isinstance(value, bool):
        return b"1" if value else b""
    return str(value).encode()


class Features:
    """The features of one qube, used like a mapping of str to str."""

    def __init__(self, vm: Caller) -> None:
        self._vm = vm

    def keys(self) -> list[str]:
        """Names of the features set on the qube."""
        data = self._vm.call_self("admin.vm.feature.List").decode()
        return [n for n in data.split("\n") if n]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __getitem__(self, name: str) -> str:
        return self._vm.call_self("admin.vm.feature.Get", name).decode()

    def __setitem__(self, name: str, value: object) -> None:
        self._vm.call_self("admin.vm.feature.Set", name, encode_feature(value))

    def __delitem__(self, name: str) -> None:
        self._vm.call_self("admin.vm.feature.Remove", name)

    def __contains__(self, name: object) -> bool:
        return str(name) in self.keys()

    def items(self) -> list[tuple[str, str]]:
        """(name, value) of every feature."""
        return [(name, self[name]) for name in self.keys()]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The feature's value, or ``default`` if it is not set."""
        try:
            return self[name]
        except QubesFeatureNotFoundError:
            return default

    def _check(self, method: str, name: str, default: str | None) -> str | None:
        try:
            return self._vm.call_self(method, name).decode()
        except QubesFeatureNotFoundError:
            return default

    def check_with_template(self, name: str, default: str | None = None) -> str | None:
        """The feature from the qube, else from its template chain."""
        return self._check("admin.vm.feature.CheckWithTemplate", name, default)

    def check_with_netvm(self, name: str, default: str | None = None) -> str | None:
        """The feature from the qube, else from its netvm chain."""
        return self._check("admin.vm.feature.CheckWithNetvm", name, default)

    def check_with_adminvm(self, name: str, default: str | None = None) -> str | None:
        """The feature from the qube, else from dom0."""
        return self._check("admin.vm.feature.CheckWithAdminVM", name, default)

    def check_with_template_and_adminvm(self, name: str, default: str | None = None) -> str | None:
        """The feature from the qube, its template chain, else dom0."""
        return self._check("admin.vm.feature.CheckWithTemplateAndAdminVM", name, default)
