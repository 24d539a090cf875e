"""The outcome of evaluating a call: :class:`Allow`, :class:`Ask` or :class:`Deny`.

Each decision renders as ``key=value`` lines (:meth:`lines`), the output of
``qrexec-policy-exec --just-evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Allow:
    """Run the call in ``target``: a qube name, ``dom0``, or ``@dispvm:NAME`` for a new
    disposable from NAME. ``user`` None means the qube's default user."""

    result: ClassVar[str] = "allow"

    target: str
    user: str | None = None
    autostart: bool = True
    notify: bool = False
    requested_target: str = ""
    rule: str | None = None

    def lines(self) -> list[str]:
        """The decision as ``key=value`` lines."""
        return [
            "result=allow",
            f"target={self.target}",
            f"user={self.user or ''}",
            f"autostart={self.autostart}",
            f"notify={self.notify}",
            f"requested_target={self.requested_target}",
            f"rule={self.rule or ''}",
        ]


@dataclass(frozen=True, slots=True)
class Deny:
    """Refuse the call, for ``reason`` (the rule's location when a rule denied it)."""

    result: ClassVar[str] = "deny"

    reason: str
    notify: bool = True
    rule: str | None = None

    def lines(self) -> list[str]:
        """The decision as ``key=value`` lines."""
        return ["result=deny", f"reason={self.reason}", f"rule={self.rule or ''}"]


@dataclass(frozen=True, slots=True)
class Ask:
    """Ask the user; ``targets`` are the choices the policy allows (qube names, ``dom0``,
    ``@dispvm:NAME``), ``default_target`` the pre-selected one (among ``targets``) or None."""

    result: ClassVar[str] = "ask"

    targets: tuple[str, ...]
    default_target: str | None = None
    requested_target: str = ""
    user: str | None = None
    autostart: bool = True
    notify: bool = False
    rule: str | None = None

    def answer(self, target: str | None) -> Allow | Deny:
        """The decision once the user answered: None (refused, or no answer) or a target."""
        if target is None:
            return Deny(f"denied by the user ({self.rule})", notify=self.notify, rule=self.rule)
        if target not in self.targets:
            return Deny(f"target {target} is not a valid choice", rule=self.rule)
        return Allow(
            target=target,
            user=self.user,
            autostart=self.autostart,
            notify=self.notify,
            requested_target=self.requested_target,
            rule=self.rule,
        )

    def lines(self) -> list[str]:
        """The decision as ``key=value`` lines (``targets`` separated by spaces)."""
        return [
            "result=ask",
            f"target={self.requested_target}",
            f"targets={' '.join(self.targets)}",
            f"default_target={self.default_target or ''}",
            f"user={self.user or ''}",
            f"autostart={self.autostart}",
            f"notify={self.notify}",
            f"rule={self.rule or ''}",
        ]


Decision = Allow | Ask | Deny

