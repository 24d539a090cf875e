"""The registry facts policy tokens resolve against: qubes, their types, tags, disposables.

septad serves them as JSON (``internal.GetSystemInfo``)::

    {"domains": {"work": {"tags": [...], "type": "AppVM", "template_for_dispvms": false,
                          "default_dispvm": "dvm", "power_state": "Halted", "uuid": "...",
                          "icon": ..., "guivm": null}, ...}}

:meth:`SystemInfo.from_json` reads that; tests build a :class:`SystemInfo` from
:class:`DomainInfo` objects directly. This module does no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ADMINVM_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True)
class DomainInfo:
    """What the policy knows of one qube.

    ``template`` (the disposable template a DispVM was created from) is optional: it
    lets ``@dispvm:NAME`` in the source column match the disposables of NAME.
    """

    name: str
    type: str = "AppVM"
    tags: frozenset[str] = frozenset()
    template_for_dispvms: bool = False
    default_dispvm: str | None = None
    power_state: str = "Halted"
    uuid: str | None = None
    icon: str | None = None
    guivm: str | None = None
    template: str | None = None

    @property
    def is_adminvm(self) -> bool:
        """Whether this is dom0."""
        return self.type == "AdminVM"


class SystemInfo:
    """All qubes, by name and by uuid."""

    __slots__ = ("adminvm", "by_uuid", "domains")

    def __init__(self, domains: Iterable[DomainInfo]) -> None:
        self.domains: dict[str, DomainInfo] = {d.name: d for d in domains}
        self.by_uuid: dict[str, str] = {
            d.uuid.lower(): d.name for d in self.domains.values() if d.uuid
        }
        admins = [d.name for d in self.domains.values() if d.is_adminvm]
        #: the name of dom0 (``dom0`` when the registry does not list it)
        self.adminvm: str = admins[0] if admins else "dom0"

    def __contains__(self, name: object) -> bool:
        return name in self.domains

    def get(self, name: str) -> DomainInfo | None:
        """The qube called ``name``, or None."""
        return self.domains.get(name)

    def resolve(self, name: str) -> str | None:
        """The name of the qube ``name`` designates (a name or ``uuid:UUID``), or None."""
        if name.startswith("uuid:"):
            uuid = name[5:].lower()
            if uuid == ADMINVM_UUID:
                return self.adminvm
            return self.by_uuid.get(uuid)
        return name if name in self.domains else None

    def is_adminvm(self, name: str) -> bool:
        """Whether ``name`` designates dom0."""
        if name in ("dom0", "@adminvm", "uuid:" + ADMINVM_UUID):
            return True
        info = self.domains.get(name)
        return info is not None and info.is_adminvm

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, object]) -> SystemInfo:
        """Read septad's ``internal.GetSystemInfo`` answer; ValueError if it is malformed."""
        if isinstance(data, bytes | str):
            try:
                data = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"system info is not valid JSON: {e}") from None
        if not isinstance(data, Mapping) or not isinstance(data.get("domains"), Mapping):
            raise ValueError("system info has no 'domains' object")
        domains = data["domains"]
        assert isinstance(domains, Mapping)
        return cls(_domain(name, fields) for name, fields in domains.items())


def _domain(name: object, fields: object) -> DomainInfo:
    if not isinstance(name, str) or not isinstance(fields, Mapping):
        raise ValueError(f"system info: bad entry for {name!r}")
    if name.startswith("uuid:"):
        raise ValueError(f"system info: entries are keyed by name, not {name!r}")
    tags = fields.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError(f"system info: tags of {name!r} are not a list of strings")
    return DomainInfo(
        name=name,
        type=_text(name, fields, "type", "AppVM"),
        tags=frozenset(tags),
        template_for_dispvms=bool(fields.get("template_for_dispvms", False)),
        default_dispvm=_optional(name, fields, "default_dispvm"),
        power_state=_text(name, fields, "power_state", "Halted"),
        uuid=_optional(name, fields, "uuid"),
        icon=_optional(name, fields, "icon"),
        guivm=_optional(name, fields, "guivm"),
        template=_optional(name, fields, "template"),
    )


def _text(name: str, fields: Mapping[str, object], key: str, default: str) -> str:
    value = fields.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"system info: {key} of {name!r} is not a string")
    return value


def _optional(name: str, fields: Mapping[str, object], key: str) -> str | None:
    value = fields.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"system info: {key} of {name!r} is not a string")
    return value
