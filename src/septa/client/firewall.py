"""Firewall rules of a qube: ``admin.vm.firewall.{Get,Set,Reload}``.

A rule is one line of ``key=value`` words; ``comment=`` comes last and may hold spaces.
Rules are normalised the way Qubes' client writes them back: keys in the order
action, proto, destination, dstports, icmptype, specialtarget, expire, comment;
port ranges always as ``N-M``; bare addresses with their full prefix length; and an
all-addresses destination (``0.0.0.0/0``, ``::/0``) left out.
:meth:`Rule.build` checks a rule given as separate values the way Qubes' client does
(e.g. a rule typed on the command line) before anything is sent.
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Mapping
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


_HOST_CHARS = frozenset(string.ascii_lowercase + string.digits + "-._")
_CHOICES = {"action": ("accept", "drop"), "proto": ("tcp", "udp", "icmp"),
            "specialtarget": ("dns",)}


def _check_destination(value: str) -> str:
    """The destination with its prefix length (host names as given); bad ones refused."""
    address, slash, _ = value.partition("/")
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        if slash:
            raise QubesValueError("Invalid IP address: %s", value) from None
        if not value or not set(value) <= _HOST_CHARS:
            raise QubesValueError("Invalid hostname: %s", value) from None
        return value
    return f"{address}/{net.prefixlen}"


def _check_number(key: str, value: str, low: int, high: int) -> int:
    if not value.isdigit() or not low <= int(value) <= high:
        raise QubesValueError("Invalid %s: %s", key, value)
    return int(value)


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

    @classmethod
    def build(cls, values: Mapping[str, str]) -> Rule:
        """A rule from separate values (``dsthost``/``dst4``/``dst6`` alike), checked.

        :class:`QubesValueError` names the first bad value: an unknown key, a missing
        or unknown action, ports without tcp/udp, an icmp type without icmp, ...
        """
        values = dict(values)
        dst = None
        for key in ("dsthost", "dst4", "dst6"):
            if key in values:
                dst = _check_destination(values.pop(key))
        unknown = sorted(set(values) - set(_KEYS))
        if unknown:
            raise QubesValueError("Unknown rule elements: %s", ", ".join(unknown))
        for key, allowed in _CHOICES.items():
            if key in values and values[key] not in allowed:
                raise QubesValueError("Invalid %s: %s", key, values[key])
        if "action" not in values:
            raise QubesValueError("Missing action= in rule")
        proto = values.get("proto")
        ports = values.get("dstports")
        if ports is not None:
            if proto not in ("tcp", "udp"):
                raise QubesValueError("dstports valid only for 'tcp' and 'udp' protocols")
            low, sep, high = ports.partition("-")
            first = _check_number("port", low, 1, 65535)
            if first > _check_number("port", high if sep else low, 1, 65535):
                raise QubesValueError("Invalid port range: %s", ports)
            ports = _normalise_ports(ports)
        icmptype = values.get("icmptype")
        if icmptype is not None:
            if proto != "icmp":
                raise QubesValueError("icmptype valid only for 'icmp' protocol")
            _check_number("icmptype", icmptype, 0, 255)
        if "expire" in values:
            _check_number("expire", values["expire"], 0, 2**63 - 1)
        comment = values.get("comment")
        if comment is not None and any(ord(ch) < 0x20 for ch in comment):
            raise QubesValueError("Comment contains control characters")
        return cls(action=values["action"], proto=proto, dst=dst, dstports=ports,
                   icmptype=icmptype, specialtarget=values.get("specialtarget"),
                   expire=values.get("expire"), comment=comment)

    @property
    def host(self) -> str | None:
        """The destination as Qubes shows it: addresses with their prefix length."""
        if self.dst is None:
            return None
        return _classify_destination(self.dst)[1]

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
