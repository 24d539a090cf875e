"""The network of real qubes: an app qube behind sys-firewall and sys-net reaches a server
on the host; its firewall rules (drop, accept, specialtarget=dns, dsthost) take effect
without a restart; qubes without netvm have no interface; two app qubes cannot reach
each other; a spoofed source address is dropped; a running qube changes netvm live."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Qubes

pytestmark = pytest.mark.e2e

TOKEN = "septa-network-e2e-token"
HOST_FROM_QUBES = "10.0.2.2"  # the host's loopback, as sys-net's user-mode uplink sees it
TEST_HOST = "testserver.septa.example"


class _Server(http.server.ThreadingHTTPServer):
    hits = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        server = self.server
        assert isinstance(server, _Server)
        server.hits += 1
        body = (TOKEN + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


class Net:
    """The module's qubes: sys-net (uplink), sys-firewall, two app qubes, one offline."""

    def __init__(self, qubes: Qubes, port: int) -> None:
        self.qubes = qubes
        self.port = port

    def fetch(self, qube: str, host: str = HOST_FROM_QUBES, extra: str = "") -> bool:
        """Whether ``qube`` gets the token over HTTP from ``host`` (bash's /dev/tcp)."""
        script = (f"timeout 8 bash -c 'exec 3<>/dev/tcp/{host}/{self.port} {extra}; "
                  f"printf \"GET / HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3' 2>&1")
        out = self.qubes.run("qvm-run", "-p", qube, script, check=False).stdout
        return TOKEN in out

    def firewall(self, qube: str, *rules: str) -> None:
        self.qubes.run("qvm-firewall", qube, "reset")
        if rules:
            self.qubes.run("qvm-firewall", qube, "del", "--rule-no", "0")
        for rule in rules:
            self.qubes.run("qvm-firewall", qube, "add", *rule.split())

    def root(self, qube: str, command: str) -> str:
        return self.qubes.run("qvm-run", "-p", "-u", "root", qube, command).stdout


@pytest.fixture(scope="module")
def net(e2e_daemon: object, server: _Server) -> Iterator[Net]:
    from tests.e2e.conftest import Qubes as Tools
    qubes = Tools(e2e_daemon)  # type: ignore[arg-type]
    names = ["net-sys", "net-fw", "net-app1", "net-app2", "net-off"]
    try:
        qubes.create("net-sys", "--prop", "provides_network=True", "--prop", "netvm=")
        qubes.run("qvm-features", "net-sys", "uplink", "slirp")
        qubes.create("net-fw", "--prop", "provides_network=True", "--prop", "netvm=net-sys")
        qubes.create("net-app1", "--prop", "netvm=net-fw")
        qubes.create("net-app2", "--prop", "netvm=net-fw")
        qubes.create("net-off", "--prop", "netvm=")
        qubes.run("qvm-start", "net-app1", "net-app2", "net-off", timeout=900)
        yield Net(qubes, server.server_address[1])
    finally:
        for name in reversed(names):
            qubes.remove(name)


def test_starting_a_client_started_its_netvm_chain(net: Net) -> None:
    assert net.qubes.state("net-fw") == "Running"
    assert net.qubes.state("net-sys") == "Running"
    refused = net.qubes.run("qvm-shutdown", "net-fw", check=False)
    assert refused.returncode != 0 and "net-app1" in refused.stderr


def test_app_qube_fetches_a_page_from_the_host_through_firewall_and_net(
        net: Net, server: _Server) -> None:
    before = server.hits
    assert net.fetch("net-app1")
    assert server.hits == before + 1
    fw_ip = net.qubes.prefs("net-fw", "ip")
    app_ip = net.qubes.prefs("net-app1", "ip")
    assert net.qubes.prefs("net-app1", "visible_gateway") == fw_ip
    shown = net.root("net-app1", "ip -4 -o addr show dev eth0; ip route show default")
    assert f"inet {app_ip}/32" in shown and f"default via {fw_ip}" in shown


def test_drop_rule_blocks_and_deleting_it_lets_through_without_restart(net: Net) -> None:
    net.root("net-app1", "touch /run/still-the-same-boot")
    net.firewall("net-app1", f"action=drop dst4={HOST_FROM_QUBES}/32", "action=accept")
    assert not net.fetch("net-app1")
    assert net.fetch("net-app2"), "another qube's traffic is not affected"
    net.qubes.run("qvm-firewall", "net-app1", "del", "--rule-no", "0")
    assert net.fetch("net-app1")
    assert "yes" in net.root("net-app1", "test -e /run/still-the-same-boot && echo yes")


def test_specialtarget_dns_lets_only_dns_through(net: Net) -> None:
    try:
        net.firewall("net-app1", "action=accept specialtarget=dns", "action=drop")
        answer = net.qubes.run("qvm-run", "-p", "net-app1",
                               "timeout 20 getent hosts deb.debian.org", check=False)
        assert answer.returncode == 0 and answer.stdout.strip(), answer
        assert not net.fetch("net-app1")
        net.firewall("net-app1", "action=drop specialtarget=dns", "action=accept")
        blocked = net.qubes.run("qvm-run", "-p", "net-app1",
                                "timeout 20 getent hosts deb.debian.org", check=False)
        assert blocked.returncode != 0
        assert net.fetch("net-app1")
    finally:
        net.firewall("net-app1")


def test_dsthost_is_resolved_in_the_netvm(net: Net) -> None:
    net.root("net-fw", f"echo '{HOST_FROM_QUBES} {TEST_HOST}' >> /etc/hosts")
    try:
        net.firewall("net-app1", f"action=drop dsthost={TEST_HOST}", "action=accept")
        assert not net.fetch("net-app1")
        net.firewall("net-app1", f"action=accept dsthost={TEST_HOST} proto=tcp "
                     f"dstports={net.port}", "action=drop")
        assert net.fetch("net-app1")
    finally:
        net.firewall("net-app1")


def test_a_qube_without_netvm_has_no_interface(net: Net) -> None:
    assert net.root("net-off", "ls /sys/class/net").split() == ["lo"]
    assert not net.fetch("net-off")


def test_two_app_qubes_cannot_reach_each_other(net: Net) -> None:
    app2_ip = net.qubes.prefs("net-app2", "ip")
    net.root("net-app2", "setsid -f socat TCP-LISTEN:7070,fork,reuseaddr "
             "SYSTEM:'echo app2-here' </dev/null >/dev/null 2>&1")
    probe = "timeout 8 socat -T5 - TCP:{}:7070 </dev/null"
    assert "app2-here" in net.root("net-fw", probe.format(app2_ip)), \
        "app2's server answers its netvm"
    out = net.qubes.run("qvm-run", "-p", "net-app1", probe.format(app2_ip), check=False)
    assert "app2-here" not in out.stdout
    ping = net.qubes.run("qvm-run", "-p", "net-app1", f"ping -c1 -W3 {app2_ip}", check=False)
    assert ping.returncode != 0


def test_a_spoofed_source_address_is_dropped(net: Net, server: _Server) -> None:
    spoofed = "10.137.0.250"
    net.root("net-app1", f"ip addr add {spoofed}/32 dev eth0")
    try:
        before = server.hits
        out = net.qubes.run(
            "qvm-run", "-p", "-u", "root", "net-app1",
            f"timeout 8 socat -T5 - TCP:{HOST_FROM_QUBES}:{net.port},bind={spoofed} "
            "<<< $'GET / HTTP/1.0\\r\\n\\r\\n'", check=False)
        assert TOKEN not in out.stdout
        assert server.hits == before
        assert net.fetch("net-app1"), "its own address still works"
    finally:
        net.root("net-app1", f"ip addr del {spoofed}/32 dev eth0")


def test_changing_netvm_of_a_running_qube_rewires_it(net: Net) -> None:
    try:
        net.qubes.run("qvm-prefs", "net-app2", "netvm", "")
        assert not net.fetch("net-app2")
        assert net.root("net-app2", "ls /sys/class/net").split() == ["lo"]
        net.qubes.run("qvm-prefs", "net-app2", "netvm", "net-sys")
        assert net.fetch("net-app2")
        gateway = net.root("net-app2", "ip route show default")
        assert f"via {net.qubes.prefs('net-sys', 'ip')}" in gateway
        net.qubes.create("net-spare", "--prop", "provides_network=True", "--prop", "netvm=")
        refused = net.qubes.run("qvm-prefs", "net-off", "netvm", "net-spare", check=False)
        assert refused.returncode != 0 and "stopped NetVM" in refused.stderr
        assert net.qubes.prefs("net-off", "netvm") == ""
    finally:
        net.qubes.remove("net-spare")
        net.qubes.run("qvm-prefs", "net-app2", "netvm", "net-fw")
    assert net.fetch("net-app2")


def test_an_offline_template_installs_a_package_through_the_updates_proxy(net: Net) -> None:
    qubes = net.qubes
    policy = qubes.daemon.paths.policy_dir / "50-config-updates.policy"
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text("qubes.UpdatesProxy * @type:TemplateVM @default allow target=net-sys\n")
    try:
        qubes.run("qvm-features", "net-sys", "service.qubes-updates-proxy", "1")
        qubes.run("qvm-clone", "debian-12", "net-tpl", timeout=900)
        assert qubes.prefs("net-tpl", "netvm") == ""
        qubes.run("qvm-start", "net-tpl")
        assert net.root("net-tpl", "ls /sys/class/net").split() == ["lo"]
        update = qubes.run("qubes-vm-update", "--targets", "net-tpl", timeout=1800)
        assert "net-tpl" in update.stdout
        net.root("net-tpl", "DEBIAN_FRONTEND=noninteractive apt-get install -y hello")
        assert qubes.run("qvm-run", "-p", "net-tpl", "hello").stdout == "Hello, world!\n"
    finally:
        qubes.remove("net-tpl")
        policy.unlink(missing_ok=True)


def test_an_expiring_rule_stops_applying_and_leaves_the_list(net: Net) -> None:
    import time

    net.qubes.run("qvm-firewall", "net-app1", "add", "--before", "0", "action=drop",
                  f"dst4={HOST_FROM_QUBES}/32", "expire=+25")
    added = time.monotonic()
    assert not net.fetch("net-app1")
    time.sleep(max(0.0, 30 - (time.monotonic() - added)))
    assert net.fetch("net-app1")
    assert net.qubes.run("qvm-firewall", "--raw", "net-app1").stdout == "action=accept\n"


def test_a_restarted_netvm_serves_its_running_clients_again(net: Net) -> None:
    net.qubes.run("qvm-kill", "net-fw")
    assert not net.fetch("net-app1")
    net.qubes.run("qvm-start", "net-fw")
    assert net.fetch("net-app1")
    assert net.fetch("net-app2")
