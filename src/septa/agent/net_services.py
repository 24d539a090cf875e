"""The network services dom0 calls: ``septa.Configure``, ``septa.NetAttach``,
``septa.NetDetach`` and ``septa.FirewallSet`` (contract: the "Guest services" part of the
network design).

Each reads one JSON object on stdin, checks all of it before changing anything, and
exits 0 (warnings, such as a ``dsthost`` that does not resolve, on stderr) or 1 with a
one-line reason on stderr.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, cast

from . import net_links, net_request, net_rules, net_state, net_table
from .net_host import SERVICES_TARGET, Host, NetError
from .net_request import fields, obj
from .net_state import Client, State

QUBES_DNS = ipaddress.IPv4Network("10.139.1.0/24")


@dataclass(frozen=True)
class Link:
    """A link of this qube: to its netvm (client) or to the outside (uplink)."""

    mac: str
    address: ipaddress.IPv4Interface
    gateway: str | None
    dns: list[str]


def _client_link(value: object) -> Link | None:
    if value is None:
        return None
    link = obj(value, "network.client")
    fields(link, "network.client", ("mac", "ip", "gateway"), ("netmask", "dns"))
    return Link(net_request.mac(link["mac"], "network.client.mac"),
                net_request.interface(link["ip"], "network.client.ip",
                                      link.get("netmask") or "255.255.255.255"),
                net_request.ipv4(link["gateway"], "network.client.gateway"),
                net_request.ipv4_list(link.get("dns", []), "network.client.dns"))


def _uplink(value: object) -> Link | None:
    if value is None:
        return None
    link = obj(value, "network.uplink")
    fields(link, "network.uplink", ("mac", "address"), ("gateway", "dns"))
    gateway = link.get("gateway")
    return Link(net_request.mac(link["mac"], "network.uplink.mac"),
                net_request.interface(link["address"], "network.uplink.address"),
                None if gateway is None else net_request.ipv4(gateway, "network.uplink.gateway"),
                net_request.ipv4_list(link.get("dns", []), "network.uplink.dns"))


@dataclass(frozen=True)
class Network:
    client: Link | None
    uplink: Link | None
    provides_network: bool
    gateway: str | None


def _network(value: object) -> Network | None:
    if value is None:
        return None
    network = obj(value, "network")
    fields(network, "network", (), ("client", "uplink", "provides_network", "gateway"))
    gateway = network.get("gateway")
    return Network(_client_link(network.get("client")), _uplink(network.get("uplink")),
                   net_request.flag(network.get("provides_network", False),
                                    "network.provides_network"),
                   None if gateway is None else net_request.ipv4(gateway, "network.gateway"))


def _set_services(host: Host, services: dict[str, bool]) -> None:
    os.makedirs(host.services_dir, mode=0o755, exist_ok=True)
    turned_off = []
    for name, enabled in services.items():
        path = os.path.join(host.services_dir, name)
        if enabled:
            with open(path, "a", encoding="ascii"):
                pass
        else:
            try:
                os.unlink(path)
                turned_off.append(path)
            except FileNotFoundError:
                pass
    if host.systemd():
        done = host.run(["systemctl", "--no-block", "start", SERVICES_TARGET])
        if done.returncode != 0 and "not found" not in done.stderr:
            host.warn(f"systemctl start {SERVICES_TARGET}: {done.stderr.strip()[:200]}")
        units = _units_of_flags(host, turned_off)
        if units:
            host.run(["systemctl", "--no-block", "stop", *units])


def _units_of_flags(host: Host, flags: list[str]) -> list[str]:
    """The optional units whose ``ConditionPathExists=`` names one of ``flags``."""
    if not flags:
        return []
    conditions = {f"ConditionPathExists={flag}" for flag in flags}
    try:
        names = sorted(os.listdir(host.wants_dir))
    except OSError:
        return []
    units = []
    for name in names:
        try:
            with open(os.path.join(host.wants_dir, name), encoding="utf-8") as unit:
                lines = {line.strip() for line in unit}
        except OSError:
            continue
        if lines & conditions:
            units.append(name)
    return units


def _upstream(host: Host, uplink: Link | None) -> list[str]:
    """The resolvers the Qubes DNS addresses are sent on to (never Qubes' own)."""
    servers = uplink.dns if uplink is not None else net_links.read_resolvers(host)
    return [s for s in servers if ipaddress.IPv4Address(s) not in QUBES_DNS]


def _table_exists(host: Host) -> bool:
    return host.run(["nft", "list", "table", "ip", "septa"]).returncode == 0


def _apply_whole(host: Host, state: State) -> None:
    text, warnings = net_table.whole(state, host.resolver)
    for warning in warnings:
        host.warn(warning)
    host.write_sysctl("net.ipv4.ip_forward", "1")
    host.must(["nft", "-f", "-"], text)


def _configure_links(host: Host, network: Network) -> None:
    resolvers: list[str] | None = None
    if network.client is not None:
        link = network.client
        net_links.take(host, link.mac, "eth0")
        net_links.set_address(host, "eth0", link.address)
        if link.gateway is not None:
            net_links.route_to(host, link.gateway, "eth0")
            net_links.default_via(host, link.gateway, "eth0")
        resolvers = link.dns
    if network.uplink is not None:
        link = network.uplink
        name = "eth1" if network.client is not None else "eth0"
        net_links.take(host, link.mac, name)
        net_links.set_address(host, name, link.address)
        if link.gateway is not None:
            net_links.default_via(host, link.gateway, name)
        resolvers = link.dns or resolvers
    if resolvers:
        net_links.write_resolv_conf(host, resolvers)


def configure(request: dict[str, object], host: Host) -> None:
    """``septa.Configure``: the qube's services and network, as a whole."""
    fields(request, "request", (), ("name", "services", "network"))
    net_request.text(request.get("name", ""), "name", 64)
    services = obj(request.get("services", {}), "services")
    wanted = {net_request.service_name(name): net_request.flag(value, f"services.{name}")
              for name, value in services.items()}
    network = _network(request.get("network"))
    _set_services(host, wanted)
    if network is None:
        return
    _configure_links(host, network)
    with net_state.locked(host):
        if network.provides_network:
            state = net_state.load(host) or State()
            state.gateway = network.gateway
            state.upstream_dns = _upstream(host, network.uplink)
            _apply_whole(host, state)
            net_state.save(host, state)
        elif net_state.load(host) is not None or _table_exists(host):
            host.must(["nft", "-f", "-"], net_table.remove_all())
            host.write_sysctl("net.ipv4.ip_forward", "0")
            net_state.forget(host)


def _rule_lines(value: object) -> list[str]:
    """The rule lines, all checked (nothing is applied when one is wrong)."""
    try:
        net_rules.parse_lines(value)
    except net_rules.RuleError as exc:
        raise NetError(f"rules: {exc}") from None
    return cast(list[str], value)


def net_attach(request: dict[str, object], host: Host) -> None:
    """``septa.NetAttach``: a client's link was hot-added here."""
    fields(request, "request", ("mac", "interface", "ip", "gateway", "rules"), ("client",))
    mac = net_request.mac(request["mac"], "mac")
    vif = net_request.vif(request["interface"], "interface")
    ip = net_request.ipv4(request["ip"], "ip")
    gateway = net_request.ipv4(request["gateway"], "gateway")
    net_request.text(request.get("client", ""), "client", 64)
    lines = _rule_lines(request["rules"])
    chain = net_rules.build_chain(lines, host.resolver)

    net_links.take(host, mac, vif)
    net_links.disable_ipv6(host, vif)
    net_links.add_address(host, vif, ipaddress.IPv4Interface(f"{gateway}/32"))
    net_links.route_to(host, f"{ip}/32", vif)
    with net_state.locked(host):
        state = net_state.load(host)
        if state is None:
            state = State(gateway, _upstream(host, None))
        old_ips = [state.clients[vif].ip] if vif in state.clients else []
        stale = sorted(other for other, client in state.clients.items()
                       if client.ip == ip and other != vif)
        for other in stale:
            del state.clients[other]
        state.clients[vif] = Client(ip, lines)
        if _table_exists(host):
            text = "".join(net_table.detach(other, [ip]) for other in stale)
            host.must(["nft", "-f", "-"], text + net_table.attach(vif, ip, chain, old_ips))
            host.warnings += chain.warnings
        else:
            _apply_whole(host, state)
        net_state.save(host, state)


def net_detach(request: dict[str, object], host: Host) -> None:
    """``septa.NetDetach``: a client's link is gone (or going); idempotent."""
    fields(request, "request", ("interface", "ip"))
    vif = net_request.vif(request["interface"], "interface")
    ip = net_request.ipv4(request["ip"], "ip")
    with net_state.locked(host):
        state = net_state.load(host)
        ips = [ip]
        if state is not None and vif in state.clients:
            ips.append(state.clients.pop(vif).ip)
        if _table_exists(host):
            host.must(["nft", "-f", "-"], net_table.detach(vif, ips))
        if state is not None:
            net_state.save(host, state)
    net_links.drop_route(host, f"{ip}/32", vif)


def firewall_set(request: dict[str, object], host: Host) -> None:
    """``septa.FirewallSet``: replace one client's rules in one transaction."""
    fields(request, "request", ("interface", "ip", "rules"))
    vif = net_request.vif(request["interface"], "interface")
    ip = net_request.ipv4(request["ip"], "ip")
    lines = _rule_lines(request["rules"])
    chain = net_rules.build_chain(lines, host.resolver)
    with net_state.locked(host):
        state = net_state.load(host)
        if state is None or vif not in state.clients:
            raise NetError(f"{vif} is not attached here")
        if state.clients[vif].ip != ip:
            raise NetError(f"{vif} is attached with {state.clients[vif].ip}, not {ip}")
        state.clients[vif].rules = lines
        if _table_exists(host):
            host.must(["nft", "-f", "-"], net_table.firewall(vif, chain))
            host.warnings += chain.warnings
        else:
            _apply_whole(host, state)
        net_state.save(host, state)


Handler = Callable[[dict[str, object], Host], None]


def serve(service: str, handler: Handler, stdin: BinaryIO | None = None,
          host: Host | None = None) -> int:
    """Run ``handler`` on the request read from ``stdin``; the exit status."""
    host = host or Host()
    try:
        handler(net_request.read(stdin or sys.stdin.buffer), host)
    except (NetError, net_rules.RuleError) as exc:
        sys.stderr.write(f"{service}: {' '.join(str(exc).split())}\n")
        return 1
    finally:
        for warning in host.warnings:
            sys.stderr.write(f"{service}: warning: {' '.join(warning.split())}\n")
    return 0


def configure_main() -> int:
    return serve("septa.Configure", configure)


def attach_main() -> int:
    return serve("septa.NetAttach", net_attach)


def detach_main() -> int:
    return serve("septa.NetDetach", net_detach)


def firewall_main() -> int:
    return serve("septa.FirewallSet", firewall_set)
