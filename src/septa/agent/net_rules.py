"""Qubes firewall rule lines -> the nft rules of one client's chain, checked item by item.

A line is ``key=value`` items separated by spaces (``comment=`` takes the rest of the
line), as dom0 sends them (:mod:`septa.core.firewall` validated them there). They are
checked again here, strictly: every value that reaches the nft text is rebuilt from a
parsed address or number, never copied from the line. Rules are evaluated in order,
the first match wins and the chain ends with ``drop``. ``dst6`` rules are left out (no
IPv6 yet); ``dsthost`` is resolved to IPv4 addresses by the resolver given (a name that
resolves to nothing makes its rule match nothing); ``specialtarget=dns`` matches the
Qubes DNS addresses, port 53, as they were before DNAT.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

KEYS = ("action", "expire", "dst4", "dst6", "dsthost", "proto", "specialtarget",
        "dstports", "icmptype", "comment")
DNS_ADDRESSES = ("10.139.1.1", "10.139.1.2")
MAX_RULES = 1024
MAX_LINE = 4096
_HOST = re.compile(r"\A(?=.{1,253}\Z)([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?\.?)+\Z")
_NUMBER = re.compile(r"\A[0-9]{1,10}\Z")

#: A host name -> its IPv4 addresses (text; checked again before use).
Resolver = Callable[[str], list[str]]


class RuleError(ValueError):
    """A rule line that is not valid; the message names the problem."""


def _number(key: str, text: str, low: int, high: int) -> int:
    if not _NUMBER.match(text) or not low <= int(text) <= high:
        raise RuleError(f"{key} must be a number from {low} to {high}: {text!r}")
    return int(text)


def _check(key: str, value: str) -> str:
    """``value`` checked for ``key``, in its canonical form."""
    if key == "action":
        if value not in ("accept", "drop"):
            raise RuleError(f"action must be accept or drop: {value!r}")
    elif key == "expire":
        _number(key, value, 0, 2**40)
    elif key == "dst4":
        try:
            value = str(ipaddress.IPv4Network(value, strict=True))
        except ValueError:
            raise RuleError(f"invalid dst4: {value!r}") from None
    elif key == "dst6":
        try:
            value = str(ipaddress.IPv6Network(value, strict=True))
        except ValueError:
            raise RuleError(f"invalid dst6: {value!r}") from None
    elif key == "dsthost":
        if not _HOST.match(value):
            raise RuleError(f"invalid dsthost: {value!r}")
    elif key == "proto":
        if value not in ("tcp", "udp", "icmp"):
            raise RuleError(f"proto must be tcp, udp or icmp: {value!r}")
    elif key == "specialtarget":
        if value != "dns":
            raise RuleError(f"specialtarget must be dns: {value!r}")
    elif key == "dstports":
        low, dash, high = value.partition("-")
        first = _number(key, low, 1, 65535)
        last = _number(key, high, 1, 65535) if dash else first
        if last < first:
            raise RuleError(f"invalid port range: {value!r}")
        value = f"{first}-{last}"
    elif key == "icmptype":
        value = str(_number(key, value, 0, 255))
    return value


def parse_line(line: str) -> dict[str, str]:
    """The items of one rule line, checked; :class:`RuleError` names the problem."""
    if not isinstance(line, str):
        raise RuleError("a rule must be a string")
    if len(line) > MAX_LINE:
        raise RuleError("rule line too long")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in line):
        raise RuleError("rule line contains control characters")
    items: dict[str, str] = {}
    rest = line.strip(" ")
    while rest:
        if rest.startswith("comment="):
            items["comment"] = rest[len("comment="):]
            break
        item, _, rest = rest.partition(" ")
        rest = rest.lstrip(" ")
        key, sep, value = item.partition("=")
        if not sep or key not in KEYS:
            raise RuleError(f"invalid rule item: {item!r}")
        if key in items:
            raise RuleError(f"{key} given twice")
        items[key] = _check(key, value)
    if "action" not in items:
        raise RuleError("a rule needs an action")
    if sum(key in items for key in ("dst4", "dst6", "dsthost")) > 1:
        raise RuleError("use only one of dst4, dst6, dsthost")
    if "dstports" in items and items.get("proto") not in ("tcp", "udp"):
        raise RuleError("dstports needs proto=tcp or proto=udp")
    if "icmptype" in items and items.get("proto") != "icmp":
        raise RuleError("icmptype needs proto=icmp")
    return items


def parse_lines(lines: object) -> list[dict[str, str]]:
    """A list of rule lines, all checked (one bad line refuses them all)."""
    if not isinstance(lines, list):
        raise RuleError("rules must be a list of strings")
    if len(lines) > MAX_RULES:
        raise RuleError(f"too many rules (at most {MAX_RULES})")
    return [parse_line(line) for line in lines]


@dataclass
class Chain:
    """The statements of one client chain (each one ``add rule`` line) and the warnings."""

    rules: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _addresses(values: list[str]) -> str:
    return values[0] if len(values) == 1 else "{ " + ", ".join(values) + " }"


def _resolve(host: str, resolver: Resolver) -> list[str]:
    try:
        found = resolver(host)
    except OSError:
        return []
    addresses: list[str] = []
    for text in found:
        try:
            address = str(ipaddress.IPv4Address(text))
        except ValueError:
            continue
        if address not in addresses:
            addresses.append(address)
    return addresses


def rule_statement(items: dict[str, str], resolver: Resolver) -> str | None:
    """The nft statement of one checked rule; None when it can match nothing here."""
    matches: list[str] = []
    if "dst6" in items:
        return None
    if "dst4" in items:
        matches.append("ip daddr " + str(ipaddress.IPv4Network(items["dst4"])))
    if "dsthost" in items:
        addresses = _resolve(items["dsthost"], resolver)
        if not addresses:
            return None
        matches.append("ip daddr " + _addresses(addresses))
    if "specialtarget" in items:
        matches.append("ct original ip daddr " + _addresses(list(DNS_ADDRESSES)))
    proto = items.get("proto")
    ports = items.get("dstports")
    if proto in ("tcp", "udp"):
        first, last = (int(part) for part in (ports or "0-65535").split("-"))
        port = None if ports is None else str(first) if first == last else f"{first}-{last}"
        if "specialtarget" in items:
            if not first <= 53 <= last:
                return None
            port = "53"
        matches.append(f"{proto} dport {port}" if port else f"meta l4proto {proto}")
    elif proto == "icmp":
        matches.append("meta l4proto icmp")
        if "icmptype" in items:
            matches.append(f"icmp type {int(items['icmptype'])}")
    elif "specialtarget" in items:
        matches.append("meta l4proto { tcp, udp } th dport 53")
    verdict = "accept" if items["action"] == "accept" else "drop"
    return " ".join([*matches, verdict])


def build_chain(lines: object, resolver: Resolver) -> Chain:
    """The chain for these rule lines (:class:`RuleError` if any is not valid)."""
    chain = Chain()
    for items in parse_lines(lines):
        statement = rule_statement(items, resolver)
        if statement is None:
            if "dsthost" in items:
                chain.warnings.append(f"{items['dsthost']} does not resolve to an IPv4 "
                                      "address: its rule matches nothing")
            continue
        chain.rules.append(statement)
    chain.rules.append("drop")
    return chain
