"""The qrexec policy engine: which qube may call which service in which other qube.

Pure logic over the policy files (Qubes 4.1+ format, 4.0 format for compatibility) and
the registry facts (:class:`SystemInfo`); the only I/O is reading policy files.
Typical use::

    cache = PolicyCache()                      # the policy dirs under SEPTA_ROOT
    decision = cache.evaluate(Request.parse("work", "@default", "qubes.Filecopy+"), info)
    if isinstance(decision, Allow): ...        # decision.target, .user, .autostart

Modules: :mod:`.names` (call and qube name rules), :mod:`.system_info`, :mod:`.tokens`,
:mod:`.rules`, :mod:`.parser` (current format), :mod:`.legacy` (4.0 format),
:mod:`.loader` (files, includes, reloading), :mod:`.request`, :mod:`.matching`,
:mod:`.evaluate`, :mod:`.decisions`.
"""

from __future__ import annotations

from .decisions import Allow, Ask, Decision, Deny
from .errors import PolicyError, PolicySyntaxError, RequestError
from .evaluate import NO_MATCH, Policy, evaluate
from .loader import PolicyCache, default_policy_dirs, load_policy
from .parser import parse_text
from .request import Request
from .rules import Action, Rule
from .system_info import DomainInfo, SystemInfo

__all__ = [
    "NO_MATCH",
    "Action",
    "Allow",
    "Ask",
    "Decision",
    "Deny",
    "DomainInfo",
    "Policy",
    "PolicyCache",
    "PolicyError",
    "PolicySyntaxError",
    "Request",
    "RequestError",
    "Rule",
    "SystemInfo",
    "default_policy_dirs",
    "evaluate",
    "load_policy",
    "parse_text",
]
