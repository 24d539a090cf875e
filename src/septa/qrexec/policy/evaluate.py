"""The policy as evaluated: rules in order, the first match decides, no match denies.

:meth:`Policy.evaluate` also applies the checks Qubes makes when it executes a call: the
source and the requested target must exist, ``@dispvm:NAME`` needs NAME to be a
template for disposables, ``@dispvm`` needs the caller's default_dispvm, ``allow``
towards ``@default`` needs a ``target=``, a qube never calls itself, and
``autostart=no`` refuses a target that is not running. For ``ask`` the choices are the
targets the rules for this service, argument and source allow (earlier rules win,
``deny`` rules remove), among existing qubes, the caller excluded.

A :class:`Policy` is immutable and indexed by service name once, when built (and by
argument on first use), so that evaluating a call only visits the rules that can
concern its service and argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .decisions import Allow, Ask, Decision, Deny
from .errors import PolicySyntaxError
from .matching import SOURCE_MATCHERS, TARGET_MATCHERS, SourceMatcher, TargetMatcher, expand
from .parser import parse_text
from .request import (
    Denied,
    Intended,
    Request,
    TargetKind,
    default_dispvm,
    resolve_source,
    resolve_target,
)
from .rules import Action, Rule
from .system_info import DomainInfo, SystemInfo
from .tokens import Token

NO_MATCH = "no matching rule"
_CALL_CACHE_SIZE = 4096

_Entry = tuple[Rule, str | None, SourceMatcher, Token, TargetMatcher, Token]


class Policy:
    """An ordered list of rules; ``files`` are the files they were read from."""

    def __init__(self, rules: Iterable[Rule], files: Sequence[str] = ()) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.files: tuple[str, ...] = tuple(files)
        entries = [
            (
                r,
                r.argument,
                SOURCE_MATCHERS[r.source.kind],
                r.source,
                TARGET_MATCHERS[r.target.kind],
                r.target,
            )
            for r in self.rules
        ]
        services = {r.service for r in self.rules if r.service is not None}
        self._any_service: tuple[_Entry, ...] = tuple(e for e in entries if e[0].service is None)
        self._by_service: dict[str, tuple[_Entry, ...]] = {
            s: tuple(e for e in entries if e[0].service in (None, s)) for s in services
        }
        self._by_call: dict[tuple[str, str], tuple[_Entry, ...]] = {}

    @classmethod
    def from_text(cls, text: str, path: str = "<string>") -> Policy:
        """A policy from the text of one file in the current format (no directives)."""
        rules: list[Rule] = []
        for item in parse_text(text, path):
            if not isinstance(item, Rule):
                raise PolicySyntaxError(item.origin, item.lineno, "directives need files")
            rules.append(item)
        return cls(rules, (path,))

    def __len__(self) -> int:
        return len(self.rules)

    def _entries(self, service: str, argument: str) -> tuple[_Entry, ...]:
        """The rules for this service and argument, in order (memoised per call name)."""
        key = (service, argument)
        entries = self._by_call.get(key)
        if entries is None:
            base = self._by_service.get(service, self._any_service)
            entries = tuple(e for e in base if e[1] is None or e[1] == argument)
            if len(self._by_call) >= _CALL_CACHE_SIZE:
                self._by_call.clear()
            self._by_call[key] = entries
        return entries

    def rules_for(self, service: str) -> tuple[Rule, ...]:
        """The rules that can apply to calls of ``service``, in order."""
        return tuple(e[0] for e in self._by_service.get(service, self._any_service))

    def evaluate(self, request: Request, info: SystemInfo) -> Decision:
        """The decision for ``request``, given the qubes described by ``info``."""
        try:
            src = resolve_source(request.source, info)
            tgt = resolve_target(request.target, info)
        except Denied as e:
            return Deny(str(e))
        rule = self._first_match(request, src, tgt, info)
        if rule is None:
            return Deny(NO_MATCH)
        try:
            if rule.action is Action.ALLOW:
                return self._allow(rule, request, src, tgt, info)
            if rule.action is Action.ASK:
                return self._ask(rule, request, src, info)
        except Denied as e:
            return Deny(str(e), notify=e.notify, rule=rule.origin)
        return Deny(f"denied by policy {rule.origin}", notify=rule.notify, rule=rule.origin)

    def find_rule(self, request: Request, info: SystemInfo) -> Rule | None:
        """The first rule matching ``request`` (None if none does or the call is invalid)."""
        try:
            src = resolve_source(request.source, info)
            tgt = resolve_target(request.target, info)
        except Denied:
            return None
        return self._first_match(request, src, tgt, info)

    def _first_match(
        self, request: Request, src: DomainInfo, tgt: Intended, info: SystemInfo
    ) -> Rule | None:
        entries = self._entries(request.service, request.argument)
        for rule, _, src_match, src_tok, tgt_match, tgt_tok in entries:
            if src_match(src_tok, src, info) and tgt_match(tgt_tok, tgt, src, info):
                return rule
        return None

    def _allow(
        self, rule: Rule, request: Request, src: DomainInfo, tgt: Intended, info: SystemInfo
    ) -> Allow:
        if rule.redirect is not None:
            tgt = resolve_target(rule.redirect.text, info)
        if tgt.kind is TargetKind.DEFAULT:
            raise Denied(
                f"policy defines 'allow' at {rule.origin} "
                "but no target is specified by the caller or the policy"
            )
        target = _concrete(tgt, src, info)
        if target is None:
            raise Denied(
                f"policy defines 'allow' to @dispvm at {rule.origin} "
                f"but {src.name} has no default_dispvm"
            )
        if target == src.name:
            raise Denied(f"{src.name} cannot call itself")
        if not rule.autostart and not _running(target, info):
            raise Denied(
                f"target {target} is not running and the rule says autostart=no",
                notify=rule.notify,
            )
        return Allow(
            target=target,
            user=rule.user,
            autostart=rule.autostart,
            notify=rule.notify,
            requested_target=request.target,
            rule=rule.origin,
        )

    def _ask(self, rule: Rule, request: Request, src: DomainInfo, info: SystemInfo) -> Ask:
        if rule.redirect is not None:
            only = _concrete_token(rule.redirect, src, info)
            targets = {only} if only is not None else set()
        else:
            targets = self._targets_for_ask(request, src, info)
        targets.discard(src.name)
        if not rule.autostart:
            targets = {t for t in targets if _running(t, info)}
        if not targets:
            raise Denied(
                f"policy defines 'ask' at {rule.origin} "
                "but no target is available to choose from"
            )
        default = None
        if rule.default_target is not None:
            default = _concrete_token(rule.default_target, src, info)
            if default not in targets:
                default = None
        return Ask(
            targets=tuple(sorted(targets)),
            default_target=default,
            requested_target=request.target,
            user=rule.user,
            autostart=rule.autostart,
            notify=rule.notify,
            rule=rule.origin,
        )

    def _targets_for_ask(self, request: Request, src: DomainInfo, info: SystemInfo) -> set[str]:
        targets: set[str] = set()
        entries = self._entries(request.service, request.argument)
        # from the last rule to the first, so that earlier rules have the last word
        for rule, _, src_match, src_tok, _, _ in reversed(entries):
            if src_match(src_tok, src, info):
                named = expand(rule.redirect or rule.target, src, info)
                if rule.action is Action.DENY:
                    targets -= named
                else:
                    targets |= named
        return targets


def _concrete(tgt: Intended, src: DomainInfo, info: SystemInfo) -> str | None:
    """The target to run in: a qube name, dom0's name or ``@dispvm:NAME``; None for
    ``@dispvm`` when the caller has no (valid) default_dispvm."""
    if tgt.kind is TargetKind.ADMINVM:
        return info.adminvm
    if tgt.kind is TargetKind.DISPVM:
        resolved = default_dispvm(src, info)
        return "@dispvm:" + resolved.name if resolved is not None else None
    if tgt.kind is TargetKind.DISPVM_TEMPLATE:
        return "@dispvm:" + tgt.name
    return tgt.name


def _concrete_token(tok: Token, src: DomainInfo, info: SystemInfo) -> str | None:
    try:
        return _concrete(resolve_target(tok.text, info), src, info)
    except Denied:
        return None


def _running(target: str, info: SystemInfo) -> bool:
    """Whether a call may go to ``target`` without starting anything."""
    if target == info.adminvm:
        return True
    if target.startswith("@dispvm:"):
        return False
    dom = info.domains.get(target)
    return dom is not None and dom.power_state == "Running"


def evaluate(policy: Policy, request: Request, info: SystemInfo) -> Decision:
    """Shorthand for :meth:`Policy.evaluate`."""
    return policy.evaluate(request, info)
