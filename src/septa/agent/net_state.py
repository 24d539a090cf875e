"""What a network qube serves, kept in ``/run/septa/net/state.json`` between services.

``septa.Configure`` sets the gateway and the upstream resolvers; ``septa.NetAttach``,
``septa.NetDetach`` and ``septa.FirewallSet`` add, drop or change one client. The whole
``ip septa`` table can be rebuilt from it. The file is checked when read: a damaged one
counts as empty (the next Configure and attaches rebuild it).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from .net_host import Host, write_atomically

STATE_FILE = "state.json"
VIF = re.compile(r"\Avif[0-9]{1,8}\Z")


@dataclass
class Client:
    """One client link: its interface, its address and its firewall rule lines."""

    ip: str
    rules: list[str] = field(default_factory=list)


@dataclass
class State:
    """The network qube's side of its clients."""

    gateway: str | None = None
    upstream_dns: list[str] = field(default_factory=list)
    clients: dict[str, Client] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"gateway": self.gateway, "upstream_dns": self.upstream_dns,
                           "clients": {vif: {"ip": c.ip, "rules": c.rules}
                                       for vif, c in sorted(self.clients.items())}},
                          indent=1) + "\n"


def _ipv4(text: object) -> str:
    return str(ipaddress.IPv4Address(text if isinstance(text, str) else ""))


def parse_state(text: str) -> State:
    """The state in ``text``; ValueError (or KeyError, TypeError) when it is not valid."""
    data = json.loads(text)
    gateway = data["gateway"]
    clients = {}
    for vif, entry in data["clients"].items():
        if not VIF.match(vif) or not isinstance(entry["rules"], list):
            raise ValueError(f"bad client {vif!r}")
        clients[vif] = Client(_ipv4(entry["ip"]), [str(rule) for rule in entry["rules"]])
    return State(None if gateway is None else _ipv4(gateway),
                 [_ipv4(address) for address in data["upstream_dns"]], clients)


def load(host: Host) -> State | None:
    """The saved state, or None when there is none (or it is damaged)."""
    try:
        with open(os.path.join(host.state_dir, STATE_FILE), encoding="utf-8") as f:
            return parse_state(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        host.warn(f"ignoring the damaged network state: {exc}")
        return None


def save(host: Host, state: State) -> None:
    os.makedirs(host.state_dir, mode=0o700, exist_ok=True)
    write_atomically(os.path.join(host.state_dir, STATE_FILE), state.to_json(), 0o600)


def forget(host: Host) -> None:
    try:
        os.unlink(os.path.join(host.state_dir, STATE_FILE))
    except FileNotFoundError:
        pass


@contextlib.contextmanager
def locked(host: Host) -> Iterator[None]:
    """Serialize the services that read and write the state (dom0 may call them at once)."""
    os.makedirs(host.state_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(host.state_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
