"""The nftables of a network qube, as ``nft -f`` text: the whole tables, or one client's part.

Table ``ip septa``:

- ``antispoof`` (prerouting, priority raw): a packet from ``vif*`` passes only when its
  (interface, source) pair is in the set ``clients``; the rest from ``vif*`` is dropped.
- ``dns_dnat`` (prerouting, dstnat): 10.139.1.1 / .2 port 53 from ``vif*`` -> the upstream
  resolvers (none when there are none).
- ``nat_out`` (postrouting, srcnat): what leaves by an interface that is not ``vif*``
  (nor ``lo``) is masqueraded.
- ``client_forward`` (forward hook, policy drop): established, related accept; invalid
  drop; ``vif*`` to ``vif*`` drop; then the verdict map ``client_chains`` sends
  (interface, source) to the client's chain ``fw-<vif>`` (its rules, ending with drop).
- ``client_input`` (input hook): from ``vif*`` only established/related, ICMP and DNS
  (port 53) pass.

Table ``ip6 septa``: everything IPv6 from ``vif*`` is dropped in prerouting.

The whole tables are replaced in one transaction (add, delete, add again: a table that
did not exist is no error). A client's attach, detach and firewall change touch only its
chain and its elements of ``clients`` and ``client_chains``: other clients' traffic is
never interrupted.
"""

from __future__ import annotations

import ipaddress

from . import net_rules
from .net_state import VIF, State

TABLE = "ip septa"
TABLE6 = "ip6 septa"
DNS_PORT = "meta l4proto { tcp, udp } th dport 53"


def chain_name(vif: str) -> str:
    if not VIF.match(vif):
        raise ValueError(f"not a client interface: {vif!r}")
    return f"fw-{vif}"


def _key(vif: str, ip: str) -> str:
    return f'"{vif}" . {ipaddress.IPv4Address(ip)}'


def client_chain(vif: str, chain: net_rules.Chain) -> list[str]:
    """Make (or empty) the client's chain and fill it."""
    name = chain_name(vif)
    return [f"add chain {TABLE} {name}", f"flush chain {TABLE} {name}",
            *(f"add rule {TABLE} {name} {rule}" for rule in chain.rules)]


def _forget_key(vif: str, ip: str) -> list[str]:
    """Remove the client's elements for ``ip`` whether or not they are there (adding an
    element that exists is no error; deleting one that does not exist would be)."""
    key = _key(vif, ip)
    return [f"add element {TABLE} clients {{ {key} }}",
            f"delete element {TABLE} clients {{ {key} }}",
            f"add element {TABLE} client_chains {{ {key} : jump {chain_name(vif)} }}",
            f"delete element {TABLE} client_chains {{ {key} }}"]


def _add_key(vif: str, ip: str) -> list[str]:
    key = _key(vif, ip)
    return [f"add element {TABLE} clients {{ {key} }}",
            f"add element {TABLE} client_chains {{ {key} : jump {chain_name(vif)} }}"]


def attach(vif: str, ip: str, chain: net_rules.Chain, old_ips: list[str]) -> str:
    """Add one client (or update it: ``old_ips`` are addresses it may have had)."""
    lines = client_chain(vif, chain)
    for old in dict.fromkeys([*old_ips, ip]):
        lines += _forget_key(vif, old)
    lines += _add_key(vif, ip)
    return "\n".join(lines) + "\n"


def detach(vif: str, ips: list[str]) -> str:
    """Remove one client: its elements (for each of ``ips``), then its chain."""
    name = chain_name(vif)
    lines = [f"add chain {TABLE} {name}"]
    for ip in dict.fromkeys(ips):
        lines += _forget_key(vif, ip)
    lines += [f"flush chain {TABLE} {name}", f"delete chain {TABLE} {name}"]
    return "\n".join(lines) + "\n"


def firewall(vif: str, chain: net_rules.Chain) -> str:
    """Replace one client's rules."""
    return "\n".join(client_chain(vif, chain)) + "\n"


def _base(upstream: list[str]) -> list[str]:
    t = TABLE
    lines = [
        f"add table {t}", f"delete table {t}", f"add table {t}",
        f"add set {t} clients {{ type ifname . ipv4_addr; }}",
        f"add map {t} client_chains {{ type ifname . ipv4_addr : verdict; }}",
        f"add chain {t} antispoof {{ type filter hook prerouting priority raw; policy accept; }}",
        f"add rule {t} antispoof iifname . ip saddr @clients accept",
        f'add rule {t} antispoof iifname "vif*" drop',
        f"add chain {t} dns_dnat {{ type nat hook prerouting priority dstnat; policy accept; }}",
    ]
    resolvers = [str(ipaddress.IPv4Address(address)) for address in upstream]
    for index, dns in enumerate(net_rules.DNS_ADDRESSES):
        if resolvers:
            target = resolvers[min(index, len(resolvers) - 1)]
            lines.append(f'add rule {t} dns_dnat iifname "vif*" ip daddr {dns} {DNS_PORT} '
                         f"dnat to {target}")
    lines += [
        f"add chain {t} nat_out {{ type nat hook postrouting priority srcnat; "
        "policy accept; }",
        f'add rule {t} nat_out oifname "lo" accept',
        f'add rule {t} nat_out oifname != "vif*" masquerade',
        f"add chain {t} client_forward {{ type filter hook forward priority filter; "
        "policy drop; }",
        f"add rule {t} client_forward ct state established,related accept",
        f"add rule {t} client_forward ct state invalid drop",
        f'add rule {t} client_forward iifname "vif*" oifname "vif*" drop',
        f"add rule {t} client_forward iifname . ip saddr vmap @client_chains",
        f"add chain {t} client_input {{ type filter hook input priority filter; "
        "policy accept; }",
        f'add rule {t} client_input iifname != "vif*" accept',
        f"add rule {t} client_input ct state established,related accept",
        f"add rule {t} client_input meta l4proto icmp accept",
        f"add rule {t} client_input {DNS_PORT} accept",
        f"add rule {t} client_input drop",
    ]
    return lines


def _base6() -> list[str]:
    t = TABLE6
    return [f"add table {t}", f"delete table {t}", f"add table {t}",
            f"add chain {t} antispoof {{ type filter hook prerouting priority raw; "
            "policy accept; }",
            f'add rule {t} antispoof iifname "vif*" drop']


def whole(state: State, resolver: net_rules.Resolver) -> tuple[str, list[str]]:
    """Both tables with every client of ``state``, and the rules' warnings. A client whose
    rules are no longer valid gets an empty chain (everything dropped) and a warning."""
    lines = _base(state.upstream_dns)
    warnings: list[str] = []
    for vif, client in sorted(state.clients.items()):
        try:
            chain = net_rules.build_chain(client.rules, resolver)
        except net_rules.RuleError as exc:
            chain = net_rules.Chain(rules=["drop"])
            warnings.append(f"{vif}: {exc}: dropping all its traffic")
        warnings += [f"{vif}: {warning}" for warning in chain.warnings]
        lines += client_chain(vif, chain) + _add_key(vif, client.ip)
    return "\n".join(lines + _base6()) + "\n", warnings


def remove_all() -> str:
    """Remove both tables (no error if they are not there)."""
    return "".join(f"add table {t}\ndelete table {t}\n" for t in (TABLE, TABLE6))
