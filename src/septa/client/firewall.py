"""Firewall rules of a qube: ``admin.vm.firewall.{Get,Set,Reload}``.

A rule is one line of ``key=value`` words; ``comment=`` comes last and may hold spaces.
Rules are normalised the way Qubes' client writes them back: keys in the order
action, proto, destination, dstports, icmptype, specialtarget, expire, comment;
port ranges always as ``N-M``; bare addresses with their full prefix length; and an
all-addresses destination (``0.0.0.0/0``, ``::/0``) left out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .errors import QubesValueError
from .properties import Caller

_KEYS = (
    "action",
    "proto",
    "dsthost",
    "dst4",
    "dst6",
    "specialtarget",
    "dstports",
    "icmptype",
    "expire",
    "comment",
)


def _classify_destination(value: str) -> tuple[str, str, int | None]:
    """(wire key, canonical value, prefix length or None for a host name)."""
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        if "/" in value:
            raise QubesValueError("Invalid IP address: %s", value) from None
        return "dsthost", value, None
    address = value.split("/", 1)[0]
    key = "dst4" if net.version == 4 else "dst6"
    return key, f"{address}/{net.prefixlen}", net.prefixlen


def _normalise_ports(value: str) -> str:
    low, sep, high = value.partition("-")
    try:
        first, last = int(low), int(high if sep else low)
    except ValueError:
        raise QubesValueError("Invalid port range: %s", value) from None
    if first > last:
        raise QubesValueError("Invalid port range: %s", value)
    return f"{first}-{last}"


@dataclass
class Rule:
    """One firewall rule."""

    action: str
    proto: str | None = None
    dst: str | None = None
    dstports: str | None = None
    icmptype: str | None = None
    specialtarget: str | None = None
    expire: str | None = None
    comment: str | None = None

    @classmethod
    def parse(cls, line: str) -> Rule:
        """Read one rule line as the daemon sends it."""
        options, _, comment = line.partition("comment=")
        values: dict[str, str] = {}
        for word in options.split(" "):
            if not word:
                continue
            key, sep, value = word.partition("=")
            if not sep or key not in _KEYS:
                raise QubesValueError("Unknown rule element: %s", word)
            values[key] = value
        if comment:
            values["comment"] = comment
        if values.get("action") not in ("accept", "drop"):
            raise QubesValueError("Invalid or missing action in rule: %s", line)
        dst = values.get("dst4") or values.get("dst6") or values.get("dsthost")
        return cls(
            action=values["action"],
            proto=values.get("proto"),
            dst=dst,
            dstports=values.get("dstports"),
            icmptype=values.get("icmptype"),
            specialtarget=values.get("specialtarget"),
            expire=values.get("expire"),
            comment=values.get("comment"),
        )

    def to_wire(self) -> str:
        """The rule as one line in the order Qubes' client writes it."""
        words = [f"action={self.action}"]
        if self.proto:
            words.append(f"proto={self.proto}")
        if self.dst:
            key, value, prefix = _classify_destination(self.dst)
            if prefix != 0:
                words.append(f"{key}={value}")
        if self.dstports and self.proto in ("tcp", "udp"):
            words.append(f"dstports={_normalise_ports(self.dstports)}")
        if self.icmptype and self.proto == "icmp":
            words.append(f"icmptype={self.icmptype}")
        if self.specialtarget:
            words.append(f"specialtarget={self.specialtarget}")
        if self.expire:
            words.append(f"expire={self.expire}")
        if self.comment:
            words.append(f"comment={self.comment}")
        return " ".join(words)


class Firewall:
    """The firewall of one qube."""

    def __init__(self, vm: Caller) -> None:
        self._vm = vm

    def get_rules(self) -> list[Rule]:
        """The rules, first match wins."""
        data = self._vm.call_self("admin.vm.firewall.Get").decode()
        return [Rule.parse(line) for line in data.split("\n") if line]

    def set_rules(self, rules: list[Rule]) -> None:
        """Replace all rules."""
        payload = "".join(rule.to_wire() + "\n" for rule in rules)
        self._vm.call_self("admin.vm.firewall.Set", None, payload.encode())

    def reload(self) -> None:
        """Apply the same rules again (e.g. to resolve host names anew)."""
        self._vm.call_self("admin.vm.firewall.Reload")
