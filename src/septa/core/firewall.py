"""Per-qube firewall rules in the Qubes format, validated and kept in ``firewall.xml``.

A rule is one line of ``key=value`` items (``action``, ``expire``, ``dst4``/``dst6``/
``dsthost``, ``proto``, ``specialtarget``, ``dstports``, ``icmptype``, ``comment``); the
netvm that serves the qube enforces them (network layer). A qube without a file has
the Qubes default: a single ``action=accept`` rule.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from septa.core.errors import QubesValueError

KEY_ORDER = ("action", "expire", "dst4", "dst6", "dsthost", "proto", "specialtarget",
             "dstports", "icmptype", "comment")
_HOST = re.compile(r"\A(?=.{1,253}\Z)([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?\.?)+\Z")
MAX_RULES = 1024
#: The rules' file in a qube's directory.
FIREWALL_FILE = "firewall.xml"


@dataclass(frozen=True)
class Rule:
    """One validated rule; ``items`` in the canonical key order."""

    items: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        return dict(self.items).get(key)

    def __str__(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.items)


def _check_value(key: str, value: str) -> str:
    if key == "action":
        if value not in ("accept", "drop"):
            raise QubesValueError("action must be accept or drop")
    elif key == "expire":
        if not value.isdigit():
            raise QubesValueError("expire must be a time in seconds since the epoch")
    elif key in ("dst4", "dst6"):
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError:
            raise QubesValueError(f"Invalid {key} address: {value}") from None
        if net.version != (4 if key == "dst4" else 6):
            raise QubesValueError(f"{key} must be an IPv{key[-1]} address")
        if "/" not in value:
            value = str(net)
    elif key == "dsthost":
        if not _HOST.match(value):
            raise QubesValueError(f"Invalid host name: {value}")
    elif key == "proto":
        if value not in ("tcp", "udp", "icmp"):
            raise QubesValueError("proto must be tcp, udp or icmp")
    elif key == "specialtarget":
        if value != "dns":
            raise QubesValueError("specialtarget must be dns")
    elif key == "dstports":
        low, _, high = value.partition("-")
        high = high or low
        if not (low.isdigit() and high.isdigit() and 0 < int(low) <= int(high) <= 65535):
            raise QubesValueError(f"Invalid port range: {value}")
        value = f"{int(low)}-{int(high)}"
    elif key == "icmptype":
        if not value.isdigit() or int(value) > 255:
            raise QubesValueError(f"Invalid icmptype: {value}")
    elif key == "comment":
        if any(ord(c) < 0x20 for c in value):
            raise QubesValueError("comment contains control characters")
    return value


def parse_rule(line: str) -> Rule:
    """A rule from its wire line; :class:`QubesValueError` names the problem."""
    values: dict[str, str] = {}
    rest = line.strip()
    while rest:
        if rest.startswith("comment="):
            values["comment"] = _check_value("comment", rest[len("comment="):])
            break
        item, _, rest = rest.partition(" ")
        key, sep, value = item.partition("=")
        if not sep or key not in KEY_ORDER:
            raise QubesValueError(f"Invalid firewall rule item: {item!r}")
        if key in values:
            raise QubesValueError(f"Firewall rule has {key} twice")
        values[key] = _check_value(key, value)
        rest = rest.lstrip(" ")
    if "action" not in values:
        raise QubesValueError("Firewall rule needs an action")
    if sum(k in values for k in ("dst4", "dst6", "dsthost")) > 1:
        raise QubesValueError("Use only one of dst4, dst6, dsthost")
    if "dstports" in values and values.get("proto") not in ("tcp", "udp"):
        raise QubesValueError("dstports needs proto=tcp or proto=udp")
    if "icmptype" in values and values.get("proto") != "icmp":
        raise QubesValueError("icmptype needs proto=icmp")
    return Rule(tuple((key, values[key]) for key in KEY_ORDER if key in values))


DEFAULT_RULES = (Rule((("action", "accept"),)),)


def split_expired(rules: list[Rule], now: float) -> tuple[list[Rule], int | None]:
    """The rules still in force at ``now`` and the earliest ``expire`` among them.

    A rule whose ``expire`` time (seconds since the epoch) is at or before ``now`` is
    gone; the second value is when the next one goes (None: no rule expires), so a timer
    set for that moment drops it.
    """
    live = [rule for rule in rules if (expire := rule.get("expire")) is None or int(expire) > now]
    expiries = [int(expire) for rule in live if (expire := rule.get("expire")) is not None]
    return live, min(expiries, default=None)


def parse_rules(text: str) -> list[Rule]:
    rules = [parse_rule(line) for line in text.splitlines() if line.strip()]
    if len(rules) > MAX_RULES:
        raise QubesValueError(f"Too many firewall rules (at most {MAX_RULES})")
    return rules


def load_rules(path: Path) -> list[Rule]:
    """Rules from a Qubes ``firewall.xml`` (the default rule when there is no file)."""
    if not path.exists():
        return list(DEFAULT_RULES)
    tree = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
    rules = []
    for node in tree.getroot().iterfind("rules/rule"):
        items = " ".join(f"{p.get('name')}={p.text or ''}"
                         for p in node.iterfind("properties/property")
                         if p.get("name") != "comment")
        comment = node.find("properties/property[@name='comment']")
        if comment is not None:
            items += f" comment={comment.text or ''}"
        rules.append(parse_rule(items))
    return rules


def save_rules(path: Path, rules: list[Rule]) -> None:
    root = etree.Element("firewall", version="2")
    container = etree.SubElement(root, "rules")
    for rule in rules:
        props = etree.SubElement(etree.SubElement(container, "rule"), "properties")
        for key, value in rule.items:
            etree.SubElement(props, "property", name=key).text = value
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out:
        out.write(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)

