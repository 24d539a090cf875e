"""Links between two running qubes, driven through the hypervisor layer directly: a
hot-added NIC pair carries traffic, removing the netvm's side cuts it, and the client's
listening side accepts the netvm again after that."""

from __future__ import annotations

import subprocess

import pytest

from septa.hypervisor.libvirt_engine import Engine
from septa.hypervisor.nic import Nics, engine_nics, read_layout
from septa.hypervisor.sockdir import link_socket_dir
from tests.e2e.conftest import Qubes

pytestmark = pytest.mark.e2e

CLIENT, NETVM = "lnk-client", "lnk-netvm"
CLIENT_MAC, NETVM_MAC = "00:16:3e:5e:6c:00", "fe:ff:ff:00:00:05"
CLIENT_IP, NETVM_IP = "10.137.0.5", "10.137.0.3"


def configure(qubes: Qubes, qube: str, mac: str, address: str, peer: str) -> None:
    """Bring up the interface with ``mac`` (waiting for it to appear): ``address`` on it,
    a route to ``peer`` through it."""
    script = f"""
for i in $(seq 100); do
  for f in /sys/class/net/*/address; do
    [ "$(cat $f)" = "{mac}" ] && dev=$(basename $(dirname $f))
  done
  [ -n "$dev" ] && break; sleep 0.2
done
[ -n "$dev" ] || {{ echo "no interface with {mac}" >&2; exit 1; }}
ip link set "$dev" up
ip addr replace {address} dev "$dev"
ip route replace {peer} dev "$dev"
"""
    qubes.run("qvm-run", "-p", "-u", "root", qube, script.strip())


def pings(qubes: Qubes, src: str, dst: str, attempts: int = 5) -> bool:
    result = qubes.run("qvm-run", "-p", src,
                       f"for i in $(seq {attempts}); do ping -c 1 -W 2 {dst} && exit 0; done;"
                       " exit 1", check=False, timeout=120)
    return result.returncode == 0


def test_link_carries_traffic_until_removed(qubes: Qubes) -> None:
    client, netvm = qubes.create(CLIENT), qubes.create(NETVM)
    engine = Engine(qubes.daemon.root)
    links: Nics = engine_nics(engine)
    try:
        qubes.run("qvm-start", client)
        qubes.run("qvm-start", netvm)
        sock = link_socket_dir(qubes.daemon.root) / f"{client}.sock"
        links.add_nic(client, "link", CLIENT_MAC, sock, server=True)
        links.add_nic(netvm, "vif5", NETVM_MAC, sock, server=False)
        assert links.nic_ids(client) == ["link"] and links.nic_ids(netvm) == ["vif5"]
        configure(qubes, client, CLIENT_MAC, f"{CLIENT_IP}/32", NETVM_IP)
        configure(qubes, netvm, NETVM_MAC, f"{NETVM_IP}/32", CLIENT_IP)
        assert pings(qubes, client, NETVM_IP)

        assert links.remove_nic(netvm, "vif5") is True
        assert links.nic_ids(netvm) == []
        assert not pings(qubes, client, NETVM_IP, attempts=2)

        # the client's side listens again: the netvm (or another one) reconnects
        links.add_nic(netvm, "vif5", NETVM_MAC, sock, server=False)
        configure(qubes, netvm, NETVM_MAC, f"{NETVM_IP}/32", CLIENT_IP)
        assert pings(qubes, client, NETVM_IP)

        assert links.remove_nic(client, "link") is True
        assert links.remove_nic(client, "link") is True, "already gone is fine"
        assert not pings(qubes, client, NETVM_IP, attempts=2)
    finally:
        for qube in (client, netvm):
            try:
                qubes.remove(qube)
            except (AssertionError, subprocess.TimeoutExpired):
                pass


def test_slirp_backend_reaches_its_gateway(qubes: Qubes) -> None:
    """The uplink's slirp plan (10.0.2.15/24 via 10.0.2.2) in a booted qube. sys-net gets
    it from its domain XML (``uplink_mac``); without core wiring this test hot-adds the
    same ``user`` backend through QMP."""
    qube = qubes.create("lnk-uplink")
    links = engine_nics(Engine(qubes.daemon.root))
    mac = "52:54:00:5e:6c:01"
    try:
        qubes.run("qvm-start", qube)
        port = read_layout(links.monitor, qube).free_ports[0]
        links.monitor.execute(qube, "netdev_add", {"type": "user", "id": "septa-net-up"})
        links.monitor.execute(qube, "device_add", {
            "driver": "virtio-net-pci", "id": "septa-nic-up", "netdev": "septa-net-up",
            "mac": mac, "bus": port})
        configure(qubes, qube, mac, "10.0.2.15/24", "10.0.2.2")
        assert pings(qubes, qube, "10.0.2.2")
    finally:
        qubes.remove(qube)
