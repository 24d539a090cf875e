"""Whether a token matches a call's source or requested target, and which targets it names.

Matching follows Qubes: ``@anyvm`` is every qube but dom0 (in the target column it also
matches ``@default`` and the ``@dispvm`` forms), dom0 is reached only through
``@adminvm`` / ``dom0`` (or ``*``), ``@dispvm:NAME`` in the target column matches both
``@dispvm:NAME`` and a plain ``@dispvm`` when NAME is the caller's default_dispvm.
"""

from __future__ import annotations

from collections.abc import Callable

from .request import Intended, TargetKind, default_dispvm
from .system_info import DomainInfo, SystemInfo
from .tokens import Kind, Token

SourceMatcher = Callable[[Token, DomainInfo, SystemInfo], bool]
TargetMatcher = Callable[[Token, Intended, DomainInfo, SystemInfo], bool]


def _src_dispvm_template(tok: Token, src: DomainInfo, info: SystemInfo) -> bool:
    return (
        src.type == "DispVM"
        and src.template is not None
        and info.resolve(tok.value) == src.template
    )


def _src_dispvm_tag(tok: Token, src: DomainInfo, info: SystemInfo) -> bool:
    if src.type != "DispVM" or src.template is None:
        return False
    template = info.domains.get(src.template)
    return template is not None and tok.value in template.tags


SOURCE_MATCHERS: dict[Kind, SourceMatcher] = {
    Kind.NAME: lambda tok, src, info: tok.value == src.name,
    Kind.UUID: lambda tok, src, info: src.uuid is not None and tok.value == src.uuid.lower(),
    Kind.ADMINVM: lambda tok, src, info: src.is_adminvm,
    Kind.ANYVM: lambda tok, src, info: not src.is_adminvm,
    Kind.WILDCARD: lambda tok, src, info: True,
    Kind.TAG: lambda tok, src, info: tok.value in src.tags,
    Kind.TYPE: lambda tok, src, info: tok.value == src.type,
    Kind.DISPVM_TEMPLATE: _src_dispvm_template,
    Kind.DISPVM_TAG: _src_dispvm_tag,
}


def source_matches(tok: Token, src: DomainInfo, info: SystemInfo) -> bool:
    """Whether the source column ``tok`` matches the calling qube ``src``."""
    return SOURCE_MATCHERS[tok.kind](tok, src, info)


def _requested_template(tgt: Intended, src: DomainInfo, info: SystemInfo) -> DomainInfo | None:
    """The disposable template a ``@dispvm`` or ``@dispvm:NAME`` request designates."""
    if tgt.kind is TargetKind.DISPVM_TEMPLATE:
        return tgt.info
    if tgt.kind is TargetKind.DISPVM:
        resolved = default_dispvm(src, info)
        return resolved.info if resolved is not None else None
    return None


def _tgt_dispvm_template(tok: Token, tgt: Intended, src: DomainInfo, info: SystemInfo) -> bool:
    template = _requested_template(tgt, src, info)
    return template is not None and template.name == info.resolve(tok.value)


def _tgt_dispvm_tag(tok: Token, tgt: Intended, src: DomainInfo, info: SystemInfo) -> bool:
    template = _requested_template(tgt, src, info)
    return template is not None and tok.value in template.tags


def _qube(tgt: Intended) -> DomainInfo | None:
    return tgt.info if tgt.kind is TargetKind.QUBE else None


def _tgt_uuid(tok: Token, tgt: Intended, src: DomainInfo, info: SystemInfo) -> bool:
    dom = _qube(tgt)
    return dom is not None and dom.uuid is not None and dom.uuid.lower() == tok.value


def _tgt_tag(tok: Token, tgt: Intended, src: DomainInfo, info: SystemInfo) -> bool:
    dom = _qube(tgt)
    return dom is not None and tok.value in dom.tags


def _tgt_type(tok: Token, tgt: Intended, src: DomainInfo, info: SystemInfo) -> bool:
    dom = _qube(tgt)
    return dom is not None and tok.value == dom.type


TARGET_MATCHERS: dict[Kind, TargetMatcher] = {
    Kind.NAME: lambda tok, tgt, src, info: tgt.kind is TargetKind.QUBE and tgt.name == tok.value,
    Kind.UUID: _tgt_uuid,
    Kind.ADMINVM: lambda tok, tgt, src, info: tgt.kind is TargetKind.ADMINVM,
    Kind.ANYVM: lambda tok, tgt, src, info: tgt.kind is not TargetKind.ADMINVM,
    Kind.WILDCARD: lambda tok, tgt, src, info: True,
    Kind.DEFAULT: lambda tok, tgt, src, info: tgt.kind is TargetKind.DEFAULT,
    Kind.DISPVM: lambda tok, tgt, src, info: tgt.kind is TargetKind.DISPVM,
    Kind.TAG: _tgt_tag,
    Kind.TYPE: _tgt_type,
    Kind.DISPVM_TEMPLATE: _tgt_dispvm_template,
    Kind.DISPVM_TAG: _tgt_dispvm_tag,
}


def target_matches(tok: Token, tgt: Intended, src: DomainInfo, info: SystemInfo) -> bool:
    """Whether the target column ``tok`` matches the requested target ``tgt`` of ``src``."""
    return TARGET_MATCHERS[tok.kind](tok, tgt, src, info)


def expand(tok: Token, src: DomainInfo, info: SystemInfo) -> set[str]:
    """The targets a user could pick that ``tok`` names: qube names, ``dom0``,
    ``@dispvm:NAME`` (``@dispvm`` resolved to the caller's default_dispvm)."""
    kind = tok.kind
    doms = info.domains.values()
    if kind in (Kind.ANYVM, Kind.WILDCARD):
        out = {d.name for d in doms if kind is Kind.WILDCARD or not d.is_adminvm}
        out.update("@dispvm:" + d.name for d in doms if d.template_for_dispvms)
        return out
    if kind is Kind.ADMINVM:
        return {info.adminvm}
    if kind in (Kind.NAME, Kind.UUID):
        name = info.resolve(tok.value if kind is Kind.NAME else "uuid:" + tok.value)
        return {name} if name is not None else set()
    if kind is Kind.TAG:
        return {d.name for d in doms if tok.value in d.tags and not d.is_adminvm}
    if kind is Kind.TYPE:
        return {d.name for d in doms if tok.value == d.type and not d.is_adminvm}
    if kind is Kind.DISPVM:
        resolved = default_dispvm(src, info)
        return {"@dispvm:" + resolved.name} if resolved is not None else set()
    if kind is Kind.DISPVM_TEMPLATE:
        name = info.resolve(tok.value)
        dom = info.domains.get(name) if name is not None else None
        return {"@dispvm:" + dom.name} if dom is not None and dom.template_for_dispvms else set()
    if kind is Kind.DISPVM_TAG:
        return {"@dispvm:" + d.name for d in doms if d.template_for_dispvms and tok.value in d.tags}
    return set()  # @default names no qube
