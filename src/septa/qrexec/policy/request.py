"""A call to evaluate, and how its source and requested target resolve against the registry.

:class:`Request` holds what the caller sent: source qube, requested target (a qube name,
``uuid:UUID``, ``dom0`` / ``@adminvm``, ``@default`` or an empty string, ``@dispvm``,
``@dispvm:NAME``), service and argument. Constructing one checks the service name and
argument (:class:`~.errors.RequestError`), so an ill-formed call never reaches the policy.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import names
from .system_info import DomainInfo, SystemInfo


@dataclass(frozen=True, slots=True)
class Request:
    """One qrexec call: ``service+argument`` from ``source`` to ``target``."""

    source: str
    target: str
    service: str
    argument: str = ""

    def __post_init__(self) -> None:
        names.check_call(self.service, self.argument)
        if self.target == "":
            object.__setattr__(self, "target", "@default")

    @classmethod
    def parse(cls, source: str, target: str, call: str) -> Request:
        """A request for ``SERVICE+ARG`` (or just ``SERVICE``, empty argument)."""
        service, argument = names.split_call(call)
        return cls(source, target, service, argument)

    @property
    def call(self) -> str:
        """``SERVICE+ARG``."""
        return f"{self.service}+{self.argument}"


class Denied(Exception):
    """A request the execution-time checks refuse; the message is the reason."""

    def __init__(self, reason: str, *, notify: bool = True) -> None:
        super().__init__(reason)
        #: whether the user should be told of the refusal
        self.notify = notify


class TargetKind(enum.Enum):
    """What the caller asked for."""

    QUBE = "qube"
    ADMINVM = "@adminvm"
    DEFAULT = "@default"
    DISPVM = "@dispvm"
    DISPVM_TEMPLATE = "@dispvm:"


@dataclass(frozen=True, slots=True)
class Intended:
    """The requested target, checked: ``name`` is the qube (QUBE) or the disposable
    template (DISPVM_TEMPLATE), empty otherwise."""

    kind: TargetKind
    name: str = ""
    info: DomainInfo | None = None


def resolve_source(source: str, info: SystemInfo) -> DomainInfo:
    """The calling qube; Denied if it does not exist."""
    name = info.resolve(source)
    if name is None:
        if source in ("dom0", "@adminvm") and info.adminvm not in info.domains:
            return DomainInfo(name="dom0", type="AdminVM")
        raise Denied(f"source qube {source!r} does not exist")
    return info.domains[name]


def resolve_target(target: str, info: SystemInfo) -> Intended:
    """The requested target, checked; Denied if it does not exist or is no valid target."""
    if target == "@default":
        return Intended(TargetKind.DEFAULT)
    if target == "@dispvm":
        return Intended(TargetKind.DISPVM)
    if info.is_adminvm(target):
        return Intended(TargetKind.ADMINVM)
    if target.startswith("@dispvm:"):
        return dispvm_template(target[8:], info)
    if target.startswith("@"):
        raise Denied(f"invalid target {target!r}")
    name = info.resolve(target)
    if name is None:
        raise Denied(f"target qube {target!r} does not exist")
    dom = info.domains[name]
    if dom.is_adminvm:
        return Intended(TargetKind.ADMINVM)
    return Intended(TargetKind.QUBE, name, dom)


def dispvm_template(template: str, info: SystemInfo) -> Intended:
    """``@dispvm:TEMPLATE``, checked: TEMPLATE must exist and have template_for_dispvms."""
    name = info.resolve(template)
    dom = info.domains.get(name) if name is not None else None
    if dom is None or not dom.template_for_dispvms:
        raise Denied(f"{template!r} is not a template for disposables")
    return Intended(TargetKind.DISPVM_TEMPLATE, dom.name, dom)


def default_dispvm(source: DomainInfo, info: SystemInfo) -> Intended | None:
    """``@dispvm`` for ``source``: its default_dispvm, if set and valid."""
    if source.default_dispvm is None:
        return None
    try:
        return dispvm_template(source.default_dispvm, info)
    except Denied:
        return None
