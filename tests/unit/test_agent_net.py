"""The agent's network services without root: rule lines -> nft text, the tables, the
links and the four services, with a fake command runner and a fake sysfs.

The runner records every command (and the ``nft -f`` text) and renames the fake sysfs
entries as ``ip link set ... name`` would; the real thing runs in
:mod:`tests.e2e.test_guest_firewall`.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from septa.agent import net_links, net_rules, net_services, net_state, net_table
from septa.agent.net_host import Completed, Host, NetError
from septa.agent.net_state import Client, State
from septa.agent.services import service_files

HOSTS = {"upstream.test": ["192.0.2.1"], "two.test": ["192.0.2.7", "192.0.2.8", "192.0.2.7"],
         "v6.test": ["2001:db8::1"], "bad.test": ["1.2.3.4; flush ruleset"]}


def resolver(host: str) -> list[str]:
    return HOSTS.get(host, [])


def chain(*lines: str) -> list[str]:
    return net_rules.build_chain(list(lines), resolver).rules


# --- rule lines -----------------------------------------------------------------------

def test_rules_become_nft_statements_in_order_ending_with_drop() -> None:
    assert chain("action=accept proto=tcp dstports=80-80", "action=drop") == [
        "tcp dport 80 accept", "drop", "drop"]
    assert chain("action=accept dst4=10.0.0.0/8 proto=udp dstports=1000-2000") == [
        "ip daddr 10.0.0.0/8 udp dport 1000-2000 accept", "drop"]
    assert chain("action=drop dst4=192.0.2.1") == ["ip daddr 192.0.2.1/32 drop", "drop"]
    assert chain("action=accept proto=icmp icmptype=8", "action=accept proto=icmp") == [
        "meta l4proto icmp icmp type 8 accept", "meta l4proto icmp accept", "drop"]
    assert chain("action=accept proto=tcp") == ["meta l4proto tcp accept", "drop"]
    assert chain() == ["drop"]


def test_dns_special_target() -> None:
    dns = "ct original ip daddr { 10.139.1.1, 10.139.1.2 }"
    assert chain("action=accept specialtarget=dns") == [
        f"{dns} meta l4proto {{ tcp, udp }} th dport 53 accept", "drop"]
    assert chain("action=accept specialtarget=dns proto=udp") == [
        f"{dns} udp dport 53 accept", "drop"]
    assert chain("action=accept specialtarget=dns proto=tcp dstports=50-60") == [
        f"{dns} tcp dport 53 accept", "drop"]
    assert chain("action=accept specialtarget=dns proto=tcp dstports=80") == ["drop"]


def test_dsthost_is_resolved_and_checked() -> None:
    assert chain("action=accept dsthost=upstream.test") == ["ip daddr 192.0.2.1 accept", "drop"]
    assert chain("action=drop dsthost=two.test proto=tcp dstports=443") == [
        "ip daddr { 192.0.2.7, 192.0.2.8 } tcp dport 443 drop", "drop"]
    built = net_rules.build_chain(["action=accept dsthost=nowhere.test",
                                   "action=accept dsthost=v6.test",
                                   "action=accept dsthost=bad.test"], resolver)
    assert built.rules == ["drop"], "names without a valid IPv4 address match nothing"
    assert len(built.warnings) == 3 and "nowhere.test" in built.warnings[0]


def test_ignored_items() -> None:
    assert chain("action=accept dst6=2001:db8::/32", "action=drop") == ["drop", "drop"]
    assert chain("action=accept expire=1700000000 comment=any; text \"here\" {}") == [
        "accept", "drop"]


@pytest.mark.parametrize("line", [
    "", "proto=tcp", "action=reject", "action=accept action=drop", "action=accept color=red",
    "action=accept dsthost=a;b", 'action=accept dsthost=a"b', "action=accept dsthost=a b",
    "action=accept dsthost=a\nflush ruleset", "action=accept comment=x\ny",
    "action=accept dst4=10.0.0.1/8", "action=accept dst4=10.0.0.0/33", "action=accept dst4=x",
    "action=accept dst4=2001:db8::/32", "action=accept dst6=10.0.0.0/8",
    "action=accept dst4=10.0.0.0/8 dsthost=a.b", "action=accept proto=sctp",
    "action=accept proto=tcp dstports=0", "action=accept proto=tcp dstports=1-65536",
    "action=accept proto=tcp dstports=90-80", "action=accept proto=tcp dstports=+80",
    "action=accept proto=tcp dstports=80-", "action=accept dstports=80",
    "action=accept proto=icmp icmptype=256", "action=accept proto=icmp icmptype=-1",
    "action=accept proto=tcp icmptype=8", "action=accept specialtarget=all",
    "action=accept expire=soon", "action=accept dsthost=" + "a" * 254, "x" * 5000,
])
def test_bad_lines_are_refused(line: str) -> None:
    with pytest.raises(net_rules.RuleError):
        net_rules.parse_line(line)


def test_rule_lists_are_checked_whole() -> None:
    for value in ("action=accept", ["action=accept", 5], [None], {"action": "accept"}):
        with pytest.raises(net_rules.RuleError):
            net_rules.build_chain(value, resolver)
    with pytest.raises(net_rules.RuleError, match="too many"):
        net_rules.parse_lines(["action=accept"] * (net_rules.MAX_RULES + 1))


# --- tables ----------------------------------------------------------------------------

def test_whole_table() -> None:
    state = State("10.137.0.3", ["10.0.2.3"], {
        "vif6": Client("10.137.0.6", ["action=accept"]),
        "vif5": Client("10.137.0.5", ["action=drop dsthost=upstream.test", "action=accept"])})
    text, warnings = net_table.whole(state, resolver)
    lines = text.splitlines()
    assert lines[:3] == ["add table ip septa", "delete table ip septa", "add table ip septa"]
    assert ('add rule ip septa dns_dnat iifname "vif*" ip daddr 10.139.1.2 '
            "meta l4proto { tcp, udp } th dport 53 dnat to 10.0.2.3") in lines
    assert "add rule ip septa antispoof iifname . ip saddr @clients accept" in lines
    assert 'add rule ip septa antispoof iifname "vif*" drop' in lines
    assert 'add rule ip septa nat_out oifname != "vif*" masquerade' in lines
    assert 'add rule ip septa client_forward iifname "vif*" oifname "vif*" drop' in lines
    assert "add rule ip septa fw-vif5 ip daddr 192.0.2.1 drop" in lines
    assert 'add element ip septa client_chains { "vif5" . 10.137.0.5 : jump fw-vif5 }' in lines
    assert 'add element ip septa clients { "vif6" . 10.137.0.6 }' in lines
    assert lines.index("add chain ip septa fw-vif5") < lines.index("add chain ip septa fw-vif6")
    assert lines[-1] == 'add rule ip6 septa antispoof iifname "vif*" drop'
    assert warnings == []


def test_whole_table_without_upstream_and_with_a_broken_client() -> None:
    state = State(None, [], {"vif5": Client("10.137.0.5", ["action=maybe"])})
    text, warnings = net_table.whole(state, resolver)
    assert "dnat to" not in text
    assert "add rule ip septa fw-vif5 drop" in text.splitlines()
    assert "fw-vif5 accept" not in text
    assert warnings and "vif5" in warnings[0]


def test_one_client_transactions() -> None:
    built = net_rules.build_chain(["action=accept"], resolver)
    assert net_table.firewall("vif5", built) == (
        "add chain ip septa fw-vif5\nflush chain ip septa fw-vif5\n"
        "add rule ip septa fw-vif5 accept\nadd rule ip septa fw-vif5 drop\n")
    attach = net_table.attach("vif5", "10.137.0.5", built, ["10.137.0.9"]).splitlines()
    assert attach[-2:] == ['add element ip septa clients { "vif5" . 10.137.0.5 }',
                           'add element ip septa client_chains { "vif5" . 10.137.0.5 : '
                           'jump fw-vif5 }']
    assert 'delete element ip septa clients { "vif5" . 10.137.0.9 }' in attach
    assert "table" not in " ".join(line.split()[1] for line in attach)
    detach = net_table.detach("vif5", ["10.137.0.5", "10.137.0.5"]).splitlines()
    assert detach[0] == "add chain ip septa fw-vif5"
    assert detach[-2:] == ["flush chain ip septa fw-vif5", "delete chain ip septa fw-vif5"]
    assert sum("delete element ip septa clients" in line for line in detach) == 1
    with pytest.raises(ValueError):
        net_table.firewall("eth0", built)


# --- a fake guest ------------------------------------------------------------------------

class FakeGuest:
    """Records commands; ``ip link set dev X name Y`` renames the fake sysfs entry."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sys_net = root / "sys"
        self.calls: list[list[str]] = []
        self.nft_texts: list[str] = []
        self.table = False
        self.fail: set[str] = set()
        for sub in ("sys", "proc/net/ipv4", "etc", "run"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "proc/net/ipv4/ip_forward").write_text("0\n")
        self.now = 0.0

    def nic(self, name: str, mac: str) -> None:
        (self.sys_net / name).mkdir()
        (self.sys_net / name / "address").write_text(mac + "\n")

    def __call__(self, argv: list[str], input: str | None = None) -> Completed:
        self.calls.append(argv)
        if argv[0] in self.fail:
            return Completed(1, "", f"{argv[0]}: failed\nmore\n")
        if argv[:3] == ["nft", "list", "table"]:
            return Completed(0 if self.table else 1, "", "" if self.table else "No such file")
        if argv[:2] == ["nft", "-f"]:
            assert input is not None
            self.nft_texts.append(input)
            self.table = "delete table ip septa\nadd table ip septa" in input or self.table
            return Completed(0)
        if argv[:3] == ["ip", "link", "set"] and argv[5:6] == ["name"]:
            os.rename(self.sys_net / argv[4], self.sys_net / argv[6])
        if argv[:2] == ["ip", "-j"]:
            return Completed(0, '[{"addr_info": [{"local": "10.137.0.9", "prefixlen": 32}]}]')
        return Completed(0)

    def host(self) -> Host:
        def sleep(seconds: float) -> None:
            self.now += seconds

        return Host(run=self, sys_net=str(self.sys_net), proc_sys=str(self.root / "proc"),
                    resolv_conf=str(self.root / "etc/resolv.conf"),
                    state_dir=str(self.root / "run/net"),
                    services_dir=str(self.root / "run/qubes-service"),
                    wants_dir=str(self.root / "wants"), resolver=resolver,
                    sleep=sleep, clock=lambda: self.now, systemd=lambda: True)

    def commands(self, program: str) -> list[str]:
        return [" ".join(argv) for argv in self.calls if argv[0] == program]


@pytest.fixture
def guest(tmp_path: Path) -> FakeGuest:
    return FakeGuest(tmp_path)


def call(guest: FakeGuest, handler: net_services.Handler, request: object,
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    raw = request if isinstance(request, bytes) else json.dumps(request).encode()
    status = net_services.serve("septa.Test", handler, io.BytesIO(raw), guest.host())
    return status, capsys.readouterr().err


# --- links -----------------------------------------------------------------------------

def test_links_by_mac_wait_and_rename(guest: FakeGuest) -> None:
    host = guest.host()
    guest.nic("enp0s3", "52:54:00:AA:BB:CC")
    guest.nic("eth0", "52:54:00:00:00:01")
    assert net_links.by_mac(host, "52:54:00:aa:bb:cc") == "enp0s3"
    net_links.take(host, "52:54:00:aa:bb:cc", "eth0")
    assert guest.commands("ip") == [
        "ip link set dev eth0 down", "ip link set dev eth0 name sx525400000001",
        "ip link set dev enp0s3 down", "ip link set dev enp0s3 name eth0",
        "ip link set dev eth0 up"]
    with pytest.raises(NetError, match="after 30 s"):
        net_links.wait_for(host, "fe:ff:ff:00:00:05")
    assert guest.now >= 30


def test_resolv_conf_round_trip(guest: FakeGuest) -> None:
    host = guest.host()
    net_links.write_resolv_conf(host, ["10.139.1.1", "10.139.1.2"])
    assert net_links.read_resolvers(host) == ["10.139.1.1", "10.139.1.2"]
    assert not list((guest.root / "etc").glob(".*"))


# --- services --------------------------------------------------------------------------

CLIENT = {"mac": "00:16:3e:5e:6c:00", "ip": "10.137.0.5", "netmask": "255.255.255.255",
          "gateway": "10.137.0.3", "dns": ["10.139.1.1", "10.139.1.2"]}


def test_configure_client_and_services(guest: FakeGuest,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    guest.nic("ens5", "00:16:3e:5e:6c:00")
    (guest.root / "run/qubes-service").mkdir(parents=True)
    (guest.root / "run/qubes-service/old").touch()
    (guest.root / "wants").mkdir()
    flags = guest.root / "run/qubes-service"
    (guest.root / "wants/old.service").write_text(
        f"[Unit]\nConditionPathExists={flags}/old\n")
    (guest.root / "wants/other.socket").write_text(
        f"[Unit]\nConditionPathExists={flags}/new-one\n")
    request = {"name": "work", "services": {"new-one": True, "old": False},
               "network": {"client": CLIENT, "uplink": None, "provides_network": False,
                           "gateway": "10.137.0.5"}}
    assert call(guest, net_services.configure, request, capsys) == (0, "")
    assert sorted(os.listdir(guest.root / "run/qubes-service")) == ["new-one"]
    assert guest.commands("systemctl") == ["systemctl --no-block start septa-services.target",
                                           "systemctl --no-block stop old.service"]
    assert guest.commands("ip") == [
        "ip link set dev ens5 down", "ip link set dev ens5 name eth0", "ip link set dev eth0 up",
        "ip -4 addr replace 10.137.0.5/32 dev eth0", "ip -j -4 addr show dev eth0",
        "ip -4 addr del 10.137.0.9/32 dev eth0",
        "ip -4 route replace 10.137.0.3 dev eth0 scope link",
        "ip -4 route replace default via 10.137.0.3 dev eth0 onlink"]
    assert net_links.read_resolvers(guest.host()) == ["10.139.1.1", "10.139.1.2"]
    assert guest.nft_texts == []


def test_configure_netvm_then_attach_firewall_detach(
        guest: FakeGuest, capsys: pytest.CaptureFixture[str]) -> None:
    guest.nic("ens3", "52:54:00:12:34:56")
    request = {"name": "sys-net", "services": {}, "network": {
        "client": None, "provides_network": True, "gateway": "10.137.0.3",
        "uplink": {"mac": "52:54:00:12:34:56", "address": "10.0.2.15/24",
                   "gateway": "10.0.2.2", "dns": ["10.0.2.3"]}}}
    assert call(guest, net_services.configure, request, capsys) == (0, "")
    assert "ip -4 route replace default via 10.0.2.2 dev eth0 onlink" in guest.commands("ip")
    assert (guest.root / "proc/net/ipv4/ip_forward").read_text() == "1\n"
    assert "dnat to 10.0.2.3" in guest.nft_texts[-1]

    guest.nic("eth1", "fe:ff:ff:00:00:05")
    guest.calls.clear()
    attach = {"mac": "fe:ff:ff:00:00:05", "interface": "vif5", "client": "work",
              "ip": "10.137.0.5", "gateway": "10.137.0.3",
              "rules": ["action=accept dsthost=nowhere.test", "action=accept"]}
    status, err = call(guest, net_services.net_attach, attach, capsys)
    assert status == 0 and "warning: nowhere.test does not resolve" in err
    assert guest.commands("ip") == [
        "ip link set dev eth1 down", "ip link set dev eth1 name vif5", "ip link set dev vif5 up",
        "ip -4 addr replace 10.137.0.3/32 dev vif5",
        "ip -4 route replace 10.137.0.5/32 dev vif5 scope link"]
    assert "delete table" not in guest.nft_texts[-1], "only this client's pieces"
    assert 'add element ip septa clients { "vif5" . 10.137.0.5 }' in guest.nft_texts[-1]
    state = net_state.load(guest.host())
    assert state is not None and state.clients["vif5"].rules == attach["rules"]
    assert state.upstream_dns == ["10.0.2.3"]

    firewall = {"interface": "vif5", "ip": "10.137.0.5", "rules": ["action=drop"]}
    assert call(guest, net_services.firewall_set, firewall, capsys) == (0, "")
    assert guest.nft_texts[-1] == ("add chain ip septa fw-vif5\nflush chain ip septa fw-vif5\n"
                                   "add rule ip septa fw-vif5 drop\n"
                                   "add rule ip septa fw-vif5 drop\n")

    detach = {"interface": "vif5", "ip": "10.137.0.5"}
    assert call(guest, net_services.net_detach, detach, capsys) == (0, "")
    assert guest.nft_texts[-1].endswith("delete chain ip septa fw-vif5\n")
    assert "ip -4 route del 10.137.0.5/32 dev vif5" in guest.commands("ip")
    state = net_state.load(guest.host())
    assert state is not None and state.clients == {}
    assert call(guest, net_services.net_detach, detach, capsys) == (0, "")

    status, err = call(guest, net_services.firewall_set, firewall, capsys)
    assert status == 1 and err == "septa.Test: vif5 is not attached here\n"


def test_attach_without_table_builds_the_whole_table(
        guest: FakeGuest, capsys: pytest.CaptureFixture[str]) -> None:
    guest.nic("vif5", "fe:ff:ff:00:00:05")
    (guest.root / "etc/resolv.conf").write_text("nameserver 10.139.1.1\nnameserver 9.9.9.9\n")
    attach = {"mac": "fe:ff:ff:00:00:05", "interface": "vif5", "ip": "10.137.0.5",
              "gateway": "10.137.0.3", "rules": ["action=accept"]}
    attach["rules"] = ["action=accept dsthost=nowhere.test"]
    status, err = call(guest, net_services.net_attach, attach, capsys)
    assert status == 0 and err.count("nowhere.test") == 1, err
    text = guest.nft_texts[-1]
    assert text.startswith("add table ip septa\ndelete table ip septa\n")
    assert "dnat to 9.9.9.9" in text and "dnat to 10.139" not in text
    assert "add rule ip septa fw-vif5 drop" in text
    assert "ip link set dev vif5 down" not in guest.commands("ip"), "already named"


def test_configure_without_network_role_removes_the_tables(
        guest: FakeGuest, capsys: pytest.CaptureFixture[str]) -> None:
    net_state.save(guest.host(), State("10.137.0.3", [], {}))
    guest.table = True
    request = {"services": {}, "network": {"client": None, "uplink": None,
                                           "provides_network": False, "gateway": None}}
    assert call(guest, net_services.configure, request, capsys) == (0, "")
    assert guest.nft_texts == [net_table.remove_all()]
    assert net_state.load(guest.host()) is None


@pytest.mark.parametrize(("handler", "request_", "reason"), [
    (net_services.net_attach, b"{not json", "not JSON"),
    (net_services.net_attach, b"[1]", "must be a JSON object"),
    (net_services.net_attach, b"\xff", "not JSON"),
    (net_services.net_detach, {"interface": "vif5"}, "ip is missing"),
    (net_services.net_detach, {"interface": "vif5", "ip": "10.137.0.5", "x": 1}, "unknown"),
    (net_services.net_detach, {"interface": "eth0", "ip": "10.137.0.5"}, "vif<number>"),
    (net_services.net_detach, {"interface": "vif5;x", "ip": "10.137.0.5"}, "vif<number>"),
    (net_services.net_detach, {"interface": "vif5", "ip": "10.137.0.5/8"}, "not an IPv4"),
    (net_services.firewall_set, {"interface": "vif5", "ip": "10.137.0.5",
                                 "rules": ["action=accept dsthost=a;b"]}, "invalid dsthost"),
    (net_services.firewall_set, {"interface": "vif5", "ip": "10.137.0.5",
                                 "rules": ["action=accept proto=tcp dstports=99999"]},
     "dstports"),
    (net_services.net_attach, {"mac": "fe:ff:ff:00:00:05\n", "interface": "vif5",
                               "ip": "10.137.0.5", "gateway": "10.137.0.3", "rules": []},
     "MAC"),
    (net_services.configure, {"services": {"../etc": True}}, "invalid service name"),
    (net_services.configure, {"services": {"..": True}}, "invalid service name"),
    (net_services.configure, {"services": {"ok": "yes"}}, "true or false"),
    (net_services.configure, {"network": {"client": {**CLIENT, "dns": ["8.8.8.8 x"]}}},
     "not an IPv4"),
    (net_services.configure, {"network": {"uplink": {"mac": "52:54:00:12:34:56",
                                                     "address": "10.0.2.15/33"}}}, "prefix"),
    (net_services.configure, {"network": {"provides_network": 1}}, "true or false"),
])
def test_bad_requests_exit_1_with_one_line_and_change_nothing(
        guest: FakeGuest, capsys: pytest.CaptureFixture[str], handler: net_services.Handler,
        request_: object, reason: str) -> None:
    status, err = call(guest, handler, request_, capsys)
    assert status == 1
    assert err.startswith("septa.Test: ") and err.count("\n") == 1 and reason in err, err
    assert guest.calls == [] and guest.nft_texts == []
    assert not (guest.root / "run/qubes-service").exists()


def test_request_size_is_bounded(guest: FakeGuest, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = call(guest, net_services.configure, b" " * (2 << 20), capsys)
    assert status == 1 and "larger than" in err


def test_a_failing_command_is_one_line(guest: FakeGuest,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    guest.nic("vif5", "fe:ff:ff:00:00:05")
    guest.fail.add("nft")
    attach = {"mac": "fe:ff:ff:00:00:05", "interface": "vif5", "ip": "10.137.0.5",
              "gateway": "10.137.0.3", "rules": ["action=accept"]}
    status, err = call(guest, net_services.net_attach, attach, capsys)
    assert (status, err) == (1, "septa.Test: nft -f -: nft: failed\n")
    assert net_state.load(guest.host()) is None, "nothing saved when nft refused"


def test_services_are_registered() -> None:
    files = service_files("/agent", "/py")
    for name, call_ in (("septa.Configure", "configure_main"), ("septa.NetAttach", "attach_main"),
                        ("septa.NetDetach", "detach_main"),
                        ("septa.FirewallSet", "firewall_main")):
        assert f"from septa.agent.net_services import {call_}" in files[name]
