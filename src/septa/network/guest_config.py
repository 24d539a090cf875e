"""The messages that configure a qube's network through its agent (``septa.Configure``,
``septa.NetAttach``, ``septa.NetDetach``, ``septa.FirewallSet``), as JSON-ready dicts.

Their layout is the contract with :mod:`septa.agent` (see the agent's network services).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Qubes' virtual DNS servers, redirected by each netvm to its real resolvers.
VIRTUAL_DNS = ("10.139.1.1", "10.139.1.2")
#: libvirt's (slirp's) fixed plan for a user-mode uplink.
SLIRP_ADDRESS = "10.0.2.15/24"
SLIRP_GATEWAY = "10.0.2.2"
SLIRP_DNS = ("10.0.2.3",)


@dataclass(frozen=True)
class ClientSide:
    """A qube's own link to its netvm."""

    mac: str
    ip: str
    gateway: str
    netmask: str = "255.255.255.255"


def configure_message(name: str, services: Mapping[str, bool], client: ClientSide | None,
                      uplink_mac: str | None, provides_network: bool,
                      own_ip: str | None) -> dict[str, Any]:
    """The whole configuration of one qube (``septa.Configure``)."""
    return {
        "name": name,
        "services": dict(services),
        "network": {
            "client": None if client is None else {
                "mac": client.mac, "ip": client.ip, "netmask": client.netmask,
                "gateway": client.gateway, "dns": list(VIRTUAL_DNS)},
            "uplink": None if uplink_mac is None else {
                "mac": uplink_mac, "address": SLIRP_ADDRESS, "gateway": SLIRP_GATEWAY,
                "dns": list(SLIRP_DNS)},
            "provides_network": provides_network,
            "gateway": own_ip if provides_network else None,
        },
    }


def attach_message(mac: str, interface: str, client: str, ip: str, gateway: str | None,
                   rules: Iterable[str]) -> dict[str, Any]:
    """A client's link was plugged into the netvm (``septa.NetAttach``)."""
    return {"mac": mac, "interface": interface, "client": client, "ip": ip,
            "gateway": gateway, "rules": list(rules)}


def detach_message(interface: str, ip: str) -> dict[str, Any]:
    """A client's link is going away (``septa.NetDetach``)."""
    return {"interface": interface, "ip": ip}


def firewall_message(interface: str, ip: str, rules: Iterable[str]) -> dict[str, Any]:
    """New rules for one client (``septa.FirewallSet``)."""
    return {"interface": interface, "ip": ip, "rules": list(rules)}
