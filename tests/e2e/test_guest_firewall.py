"""The network services of the agent in a real qube, on a network built inside it.

dom0 does not wire qubes together yet, so one qube plays the network qube in its root
namespace, with its clients and its uplink in network namespaces joined by veth pairs:

    c1 (eth0 10.137.0.5) -- vif5 \\
                                  [root ns: the netvm, 10.137.0.3 on each vif] eth0 -- up
    c2 (eth0 10.137.0.6) -- vif6 /                               192.0.2.2/24    192.0.2.1

``up`` runs a TCP server on port 80 and a UDP "resolver" on port 53. The services get
their JSON on stdin, as dom0 sends it; every check is a real connection.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Qubes
from tests.wire import Daemon

pytestmark = pytest.mark.e2e

QUBE = "netfw-netvm"
UPSTREAM = "192.0.2.1"
CLIENT_MAC = "00:16:3e:5e:6c:00"

SETUP = f"""set -e
for ns in up c1 c2; do ip netns add $ns; ip -n $ns link set lo up; done
ip link add upl address 52:54:00:12:34:56 type veth peer name eth0 netns up
ip -n up addr add {UPSTREAM}/24 dev eth0; ip -n up link set eth0 up
ip link add c1host address fe:ff:ff:00:00:05 type veth peer name nic address {CLIENT_MAC} netns c1
ip link add c2host address fe:ff:ff:00:00:06 type veth peer name nic address {CLIENT_MAC} netns c2
mkdir -p /etc/netns/c1 /etc/netns/c2; touch /etc/netns/c1/resolv.conf /etc/netns/c2/resolv.conf
echo '{UPSTREAM} upstream.test' >> /etc/hosts
run() {{ setsid "$@" </dev/null >/dev/null 2>&1 & }}
run ip netns exec up socat TCP4-LISTEN:80,bind={UPSTREAM},fork,reuseaddr SYSTEM:'echo up-ok'
run ip netns exec up socat UDP4-RECVFROM:53,bind={UPSTREAM},fork SYSTEM:'echo dns-ok'
run ip netns exec c2 socat TCP4-LISTEN:80,fork,reuseaddr SYSTEM:'echo c2-ok'
run socat TCP4-LISTEN:8080,fork,reuseaddr SYSTEM:'echo netvm-ok'
"""


def client_config(ip: str) -> dict[str, object]:
    return {"name": "c", "services": {}, "network": {
        "client": {"mac": CLIENT_MAC, "ip": ip, "netmask": "255.255.255.255",
                   "gateway": "10.137.0.3", "dns": ["10.139.1.1", "10.139.1.2"]},
        "uplink": None, "provides_network": False, "gateway": ip}}


NETVM_CONFIG = {"name": QUBE, "services": {"septa-test-flag": True}, "network": {
    "client": None,
    "uplink": {"mac": "52:54:00:12:34:56", "address": "192.0.2.2/24", "gateway": UPSTREAM,
               "dns": [UPSTREAM]},
    "provides_network": True, "gateway": "10.137.0.3"}}


class Netvm:
    def __init__(self, qubes: Qubes) -> None:
        self.qubes = qubes

    def sh(self, command: str) -> subprocess.CompletedProcess[str]:
        return self.qubes.run("qvm-run", "-p", "-u", "root", QUBE, command, check=False,
                              timeout=300)

    def service(self, name: str, request: object, ns: str | None = None,
                raw: bytes | None = None) -> subprocess.CompletedProcess[str]:
        data = raw if raw is not None else json.dumps(request).encode()
        prefix = f"ip netns exec {ns} " if ns else ""
        return self.sh(f"echo {base64.b64encode(data).decode()} | base64 -d | "
                       f"{prefix}/etc/qubes-rpc/{name}")

    def firewall(self, *rules: str) -> None:
        done = self.service("septa.FirewallSet",
                            {"interface": "vif5", "ip": "10.137.0.5", "rules": list(rules)})
        assert done.returncode == 0, done.stderr

    def tcp(self, ns: str, address: str, bind: str | None = None, port: int = 80) -> str:
        """What ``ns`` gets from ``address``:``port``, "" when it cannot connect."""
        option = f",bind={bind}" if bind else ""
        return self.sh(f"ip netns exec {ns} socat -u TCP4:{address}:{port},connect-timeout=4"
                       f"{option} STDOUT").stdout.strip()

    def dns(self, ns: str) -> str:
        return self.sh(f"echo q | ip netns exec {ns} socat -t4 - UDP4:10.139.1.1:53"
                       ).stdout.strip()


@pytest.fixture(scope="module")
def netvm(e2e_daemon: Daemon) -> Iterator[Netvm]:
    qubes = Qubes(e2e_daemon)
    qubes.create(QUBE)
    try:
        qubes.run("qvm-start", QUBE)
        vm = Netvm(qubes)
        done = vm.sh(SETUP.strip())
        assert done.returncode == 0, done.stderr
        for ns, ip in (("c1", "10.137.0.5"), ("c2", "10.137.0.6")):
            done = vm.service("septa.Configure", client_config(ip), ns=ns)
            assert done.returncode == 0, done.stderr
        done = vm.service("septa.Configure", NETVM_CONFIG)
        assert done.returncode == 0, done.stderr
        for vif, ip in (("vif5", "10.137.0.5"), ("vif6", "10.137.0.6")):
            done = vm.service("septa.NetAttach", {
                "mac": f"fe:ff:ff:00:00:0{vif[-1]}", "interface": vif, "client": "c",
                "ip": ip, "gateway": "10.137.0.3", "rules": ["action=accept"]})
            assert done.returncode == 0, done.stderr
        yield vm
    finally:
        qubes.remove(QUBE)


def test_configure_sets_links_and_services(netvm: Netvm) -> None:
    listing = netvm.sh("ip -br addr; ip route; cat /etc/resolv.conf; ls /run/qubes-service; "
                       "cat /proc/sys/net/ipv4/ip_forward").stdout
    assert "eth0" in listing and "192.0.2.2/24" in listing
    assert f"default via {UPSTREAM} dev eth0" in listing
    assert f"nameserver {UPSTREAM}" in listing
    assert "septa-test-flag" in listing
    assert listing.strip().endswith("1")
    assert "10.137.0.5 dev vif5" in listing
    client = netvm.sh("ip netns exec c1 sh -c 'ip -br addr; ip route; cat /etc/resolv.conf'"
                      ).stdout
    assert "eth0" in client and "10.137.0.5/32" in client
    assert "default via 10.137.0.3 dev eth0" in client
    assert "nameserver 10.139.1.1" in client


def test_client_reaches_upstream_and_firewall_changes_apply_live(netvm: Netvm) -> None:
    assert netvm.tcp("c1", UPSTREAM) == "up-ok"
    netvm.firewall(f"action=drop dst4={UPSTREAM}/32", "action=accept")
    assert netvm.tcp("c1", UPSTREAM) == ""
    assert netvm.tcp("c2", UPSTREAM) == "up-ok", "another client's rules are its own"
    netvm.firewall("action=accept")
    assert netvm.tcp("c1", UPSTREAM) == "up-ok"


def test_clients_cannot_reach_each_other(netvm: Netvm) -> None:
    assert netvm.tcp("c1", "10.137.0.6") == ""
    control = netvm.sh("socat -u TCP4:10.137.0.6:80,connect-timeout=4 STDOUT").stdout
    assert control.strip() == "c2-ok", "the netvm itself reaches c2"


def test_clients_reach_the_netvm_only_for_icmp_and_dns(netvm: Netvm) -> None:
    assert netvm.tcp("c1", "10.137.0.3", port=8080) == ""
    assert netvm.sh("socat -u TCP4:10.137.0.3:8080 STDOUT").stdout.strip() == "netvm-ok"
    assert netvm.sh("ip netns exec c1 ping -c1 -W4 10.137.0.3").returncode == 0


def test_spoofed_source_is_dropped(netvm: Netvm) -> None:
    netvm.sh("ip netns exec c1 ip addr add 10.137.0.99/32 dev eth0")
    assert netvm.tcp("c1", UPSTREAM, bind="10.137.0.99") == ""
    netvm.sh("ip netns exec c1 ip addr add 10.137.0.6/32 dev eth0")
    assert netvm.tcp("c1", UPSTREAM, bind="10.137.0.6") == ""
    assert netvm.tcp("c1", UPSTREAM, bind="10.137.0.5") == "up-ok"


def test_dns_special_target(netvm: Netvm) -> None:
    assert netvm.dns("c1") == "dns-ok"
    netvm.firewall("action=accept specialtarget=dns", "action=drop")
    try:
        assert netvm.dns("c1") == "dns-ok", "DNS to 10.139.1.1 goes to the upstream resolver"
        assert netvm.tcp("c1", UPSTREAM) == ""
    finally:
        netvm.firewall("action=accept")


def test_dsthost_is_resolved_in_the_netvm(netvm: Netvm) -> None:
    done = netvm.service("septa.FirewallSet", {
        "interface": "vif5", "ip": "10.137.0.5",
        "rules": ["action=accept dsthost=nowhere.invalid", "action=drop dsthost=upstream.test",
                  "action=accept"]})
    try:
        assert done.returncode == 0, done.stderr
        assert "nowhere.invalid" in done.stderr
        assert netvm.tcp("c1", UPSTREAM) == ""
    finally:
        netvm.firewall("action=accept")
    assert netvm.tcp("c1", UPSTREAM) == "up-ok"


def test_hostile_requests_change_nothing(netvm: Netvm) -> None:
    netvm.firewall(f"action=drop dst4={UPSTREAM}/32", "action=accept")
    try:
        for rule in ("action=accept dsthost=a;flush ruleset", 'action=accept dsthost=a"b',
                     "action=accept\nflush ruleset", "action=accept proto=tcp dstports=1-70000",
                     "action=accept color=red"):
            done = netvm.service("septa.FirewallSet", {
                "interface": "vif5", "ip": "10.137.0.5", "rules": [rule]})
            assert done.returncode == 1, rule
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        done = netvm.service("septa.NetAttach", None, raw=b"{not json")
        assert done.returncode == 1
        assert netvm.tcp("c1", UPSTREAM) == "", "the earlier rules still hold"
    finally:
        netvm.firewall("action=accept")


def test_detach_removes_the_client(netvm: Netvm) -> None:
    request = {"interface": "vif5", "ip": "10.137.0.5"}
    assert netvm.service("septa.NetDetach", request).returncode == 0
    assert netvm.tcp("c1", UPSTREAM) == ""
    assert "fw-vif5" not in netvm.sh("nft list table ip septa").stdout
    assert netvm.tcp("c2", UPSTREAM) == "up-ok"
    assert netvm.service("septa.NetDetach", request).returncode == 0, "idempotent"
