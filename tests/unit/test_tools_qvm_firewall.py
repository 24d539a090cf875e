"""qvm-firewall against a fake septad: the rule table, --raw, add/del/reset and bad rules."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

import septa.paths
from septa.client.errors import QubesValueError
from septa.client.firewall import Rule
from septa.client.testing import FakeAdminServer
from septa.tools import qvm_firewall

TWO_RULES = "action=accept dsthost=qubes-os.org\naction=drop proto=icmp\n"


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect("dom0", "admin.vm.List", ok="work class=AppVM state=Halted\n")
        yield srv


def sets(server: FakeAdminServer) -> list[str]:
    return [r for _, m, _, r in _calls(server) if m == "admin.vm.firewall.Set"]


def _calls(server: FakeAdminServer) -> list[tuple[str, str, str | None, str]]:
    return [(c.dest, c.method, c.arg, c.payload.decode()) for c in server.calls]


def test_list_table(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("work", "admin.vm.firewall.Get", ok=(
        "action=accept dsthost=qubes-os.org proto=tcp dstports=443-443\n"
        "action=drop proto=icmp icmptype=8\n"
        "action=accept dst4=10.1.0.0/16 proto=udp dstports=1200-1400\n"
        "action=accept specialtarget=dns comment=Allow DNS\n"))
    assert qvm_firewall.main(["work"]) == 0
    assert qvm_firewall.main(["work", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:5] == [
        "NO  ACTION  HOST          PROTOCOL  PORT(S)    SPECIAL TARGET  ICMP TYPE  EXPIRE  COMMENT",
        "0   accept  qubes-os.org  tcp       443        -               -          -       -",
        "1   drop    -             icmp      -          -               8          -       -",
        "2   accept  10.1.0.0/16   udp       1200-1400  -               -          -       -",
        "3   accept  -             -         -          dns             -          -       "
        "Allow DNS",
    ]
    assert lines[5:] == lines[:5]


def test_list_expire(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    in_1h = int(time.time()) + 3600
    server.expect("work", "admin.vm.firewall.Get", ok=f"action=accept expire={in_1h}\n")
    assert qvm_firewall.main(["work"]) == 0
    match = re.match(r"0   accept  -     -         -        -               -          "
                     r"\+(\d{4})s  -$", capsys.readouterr().out.splitlines()[1])
    assert match and 3590 < int(match.group(1)) <= 3600


def test_list_raw_and_reload(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("work", "admin.vm.firewall.Get",
                  ok="action=accept expire=1700000000 dst4=10.0.0.1/32 proto=tcp dstports=80-80\n"
                     + TWO_RULES)
    server.expect("work", "admin.vm.firewall.Reload", ok="")
    assert qvm_firewall.main(["--raw", "work", "list"]) == 0
    assert qvm_firewall.main(["work", "--raw", "--reload"]) == 0
    out = capsys.readouterr().out
    assert out == 2 * ("action=accept proto=tcp dst4=10.0.0.1/32 dstports=80-80 expire=1700000000\n"
                       + TWO_RULES)
    assert [m for _, m, _, _ in _calls(server)].count("admin.vm.firewall.Reload") == 1


def test_add_at_end_and_before(server: FakeAdminServer) -> None:
    server.expect("work", "admin.vm.firewall.Get", ok=TWO_RULES)
    server.expect("work", "admin.vm.firewall.Set", ok="")
    assert qvm_firewall.main(["work", "add", "accept", "192.168.0.0/24",
                              "comment=Allow LAN"]) == 0
    assert qvm_firewall.main(["work", "add", "--before", "1", "accept", "10.0.0.1", "tcp",
                              "22"]) == 0
    assert qvm_firewall.main(["work", "add", "dst4=10.0.0.2", "proto=icmp", "drop", "8"]) == 0
    assert sets(server) == [
        TWO_RULES + "action=accept dst4=192.168.0.0/24 comment=Allow LAN\n",
        "action=accept dsthost=qubes-os.org\n"
        "action=accept proto=tcp dst4=10.0.0.1/32 dstports=22-22\n"
        "action=drop proto=icmp\n",
        TWO_RULES + "action=drop proto=icmp dst4=10.0.0.2/32 icmptype=8\n",
    ]


def test_add_relative_expire(server: FakeAdminServer) -> None:
    server.expect("work", "admin.vm.firewall.Get", ok="")
    server.expect("work", "admin.vm.firewall.Set", ok="")
    now = int(time.time())
    assert qvm_firewall.main(["work", "add", "accept", "expire=+300"]) == 0
    expire = int(sets(server)[0].split("expire=")[1])
    assert now + 300 <= expire <= int(time.time()) + 300


def test_del_by_number_and_by_rule(server: FakeAdminServer) -> None:
    server.expect("work", "admin.vm.firewall.Get", ok=TWO_RULES)
    server.expect("work", "admin.vm.firewall.Set", ok="")
    assert qvm_firewall.main(["work", "del", "--rule-no", "1"]) == 0
    assert qvm_firewall.main(["work", "del", "drop", "proto=icmp"]) == 0
    assert qvm_firewall.main(["work", "del", "accept", "qubes-os.org"]) == 0
    assert sets(server) == ["action=accept dsthost=qubes-os.org\n"] * 2 + [
        "action=drop proto=icmp\n"]


def test_reset(server: FakeAdminServer) -> None:
    server.expect("work", "admin.vm.firewall.Set", ok="")
    assert qvm_firewall.main(["work", "reset"]) == 0
    assert sets(server) == ["action=accept\n"]


@pytest.mark.parametrize(("args", "code", "message"), [
    (["add", "action=allow"], 1, "Error: Invalid action: allow\n"),
    (["add", "accept", "dstports=80"], 1,
     "Error: dstports valid only for 'tcp' and 'udp' protocols\n"),
    (["add", "accept", "10.0.0.0/33"], 1, "Error: Invalid IP address: 10.0.0.0/33\n"),
    (["add", "accept", "Bad_Host!"], 1, "Error: Invalid hostname: Bad_Host!\n"),
    (["add", "accept", "10.0.0.1", "tcp", "70000"], 1, "Error: Invalid port: 70000\n"),
    (["add", "accept", "10.0.0.1", "icmp", "300"], 1, "Error: Invalid icmptype: 300\n"),
    (["add", "proto=tcp"], 1, "Error: Missing action= in rule\n"),
    (["del", "--rule-no", "5"], 1, "Error: No rule number 5\n"),
    (["del", "accept", "example.com"], 1,
     "Error: No such rule: action=accept dsthost=example.com\n"),
    (["del"], 1, "Error: Give the rule to remove, or --rule-no\n"),
])
def test_bad_rules_change_nothing(server: FakeAdminServer, capsys: pytest.CaptureFixture[str],
                                  args: list[str], code: int, message: str) -> None:
    server.expect("work", "admin.vm.firewall.Get", ok=TWO_RULES)
    server.expect("work", "admin.vm.firewall.Set", ok="")
    assert qvm_firewall.main(["work", *args]) == code
    assert capsys.readouterr().err == message
    assert sets(server) == []


@pytest.mark.parametrize(("words", "message"), [
    (["dsthost=", "accept"], "invalid rule description: dsthost="),
    (["accept", "a=b=c"], "invalid rule description: a=b=c"),
    (["accept", "colour=red"], "Invalid rule element: colour=red"),
    (["accept", "h", "tcp", "80", "extra"], "invalid rule description: extra"),
])
def test_malformed_descriptions_are_usage_errors(
        server: FakeAdminServer, capsys: pytest.CaptureFixture[str],
        words: list[str], message: str) -> None:
    assert qvm_firewall.main(["work", "add", *words]) == 2
    assert capsys.readouterr().err.endswith(f"error: {message}\n")
    assert sets(server) == []


def test_daemon_refusal_is_reported(server: FakeAdminServer,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("work", "admin.vm.firewall.Get", ok="")
    server.fail("work", "admin.vm.firewall.Set", exc="QubesValueError", message="Too many rules")
    assert qvm_firewall.main(["work", "add", "drop"]) == 1
    assert capsys.readouterr().err == "Error: Too many rules\n"


def test_rule_build_checks_like_qubes() -> None:
    rule = Rule.build({"action": "accept", "dst6": "fd00::", "proto": "udp", "dstports": "53"})
    assert rule.to_wire() == "action=accept proto=udp dst6=fd00::/128 dstports=53-53"
    assert Rule.build({"action": "drop", "dsthost": "0.0.0.0/0"}).to_wire() == "action=drop"
    with pytest.raises(QubesValueError, match="Invalid IP address: 10.1/8"):
        Rule.build({"action": "drop", "dsthost": "10.1/8"})
    with pytest.raises(QubesValueError, match="port range"):
        Rule.build({"action": "drop", "proto": "tcp", "dstports": "90-80"})
    with pytest.raises(QubesValueError, match="Invalid port"):
        Rule.build({"action": "drop", "proto": "tcp", "dstports": "80-"})
