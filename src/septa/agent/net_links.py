"""The guest's network interfaces: found by MAC, renamed, given addresses and routes.

Every change is idempotent (``ip addr replace``, ``ip route replace``), so a repeated
``septa.Configure`` or ``septa.NetAttach`` lands in the same state.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re

from .net_host import Host, NetError, write_atomically

MAC = re.compile(r"\A[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
IFNAME = re.compile(r"\A[A-Za-z0-9_.-]{1,15}\Z")
WAIT_SECONDS = 30.0
POLL_SECONDS = 0.2


def interfaces(host: Host) -> dict[str, str]:
    """Interface name -> MAC address (lower case), from sysfs."""
    found: dict[str, str] = {}
    try:
        names = os.listdir(host.sys_net)
    except OSError:
        return found
    for name in names:
        try:
            with open(os.path.join(host.sys_net, name, "address"), encoding="ascii") as f:
                found[name] = f.read().strip().lower()
        except (OSError, UnicodeDecodeError):
            continue
    return found


def by_mac(host: Host, mac: str) -> str | None:
    """The interface that has ``mac``, if any."""
    for name, address in sorted(interfaces(host).items()):
        if address == mac.lower():
            return name
    return None


def wait_for(host: Host, mac: str, timeout: float = WAIT_SECONDS) -> str:
    """The interface with ``mac``, waiting up to ``timeout`` seconds for it to appear."""
    deadline = host.clock() + timeout
    while True:
        name = by_mac(host, mac)
        if name is not None:
            return name
        if host.clock() >= deadline:
            raise NetError(f"no interface with MAC {mac} after {timeout:g} s")
        host.sleep(POLL_SECONDS)


def rename(host: Host, current: str, wanted: str) -> None:
    """Give ``current`` the name ``wanted``; another interface of that name moves aside."""
    if current == wanted:
        return
    present = interfaces(host)
    if wanted in present:
        aside = "sx" + present[wanted].replace(":", "")[-12:]
        host.must(["ip", "link", "set", "dev", wanted, "down"])
        host.must(["ip", "link", "set", "dev", wanted, "name", aside])
    host.must(["ip", "link", "set", "dev", current, "down"])
    host.must(["ip", "link", "set", "dev", current, "name", wanted])


def take(host: Host, mac: str, name: str, timeout: float = WAIT_SECONDS) -> None:
    """Find the interface with ``mac`` (waiting for it), name it ``name`` and bring it up."""
    rename(host, wait_for(host, mac, timeout), name)
    host.must(["ip", "link", "set", "dev", name, "up"])


def set_address(host: Host, name: str, address: ipaddress.IPv4Interface) -> None:
    """Make ``address`` the only IPv4 address of ``name``."""
    host.must(["ip", "-4", "addr", "replace", str(address), "dev", name])
    listing = host.must(["ip", "-j", "-4", "addr", "show", "dev", name])
    try:
        entries = json.loads(listing or "[]")
        present = [f"{info['local']}/{info['prefixlen']}"
                   for entry in entries for info in entry.get("addr_info", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        present = []
    for other in present:
        if other != str(address):
            host.run(["ip", "-4", "addr", "del", other, "dev", name])


def add_address(host: Host, name: str, address: ipaddress.IPv4Interface) -> None:
    host.must(["ip", "-4", "addr", "replace", str(address), "dev", name])


def route_to(host: Host, destination: str, name: str) -> None:
    """A link route (``destination`` reached directly on ``name``)."""
    host.must(["ip", "-4", "route", "replace", destination, "dev", name, "scope", "link"])


def default_via(host: Host, gateway: str, name: str) -> None:
    host.must(["ip", "-4", "route", "replace", "default", "via", gateway, "dev", name,
               "onlink"])


def drop_route(host: Host, destination: str, name: str) -> None:
    """Remove a route if it is there (its interface may be gone already)."""
    host.run(["ip", "-4", "route", "del", destination, "dev", name])


def disable_ipv6(host: Host, name: str) -> None:
    """No IPv6 on ``name`` (best effort: the kernel may have no IPv6 at all)."""
    try:
        host.write_sysctl(f"net.ipv6.conf.{name}.disable_ipv6", "1")
    except NetError:
        pass


def write_resolv_conf(host: Host, servers: list[str]) -> None:
    text = "# Written by the Septa agent (septa.Configure).\n" + "".join(
        f"nameserver {ipaddress.IPv4Address(server)}\n" for server in servers)
    try:
        write_atomically(host.resolv_conf, text)
    except OSError as exc:
        raise NetError(f"cannot write {host.resolv_conf}: {exc.strerror}") from None


def read_resolvers(host: Host) -> list[str]:
    """The IPv4 name servers of /etc/resolv.conf."""
    servers: list[str] = []
    try:
        with open(host.resolv_conf, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return servers
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                servers.append(str(ipaddress.IPv4Address(words[1])))
            except ValueError:
                continue
    return servers
