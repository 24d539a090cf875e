"""The netvm chain's pure decisions: link names, agent messages, services, refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from septa import paths
from septa.core import store
from septa.core.app import Qubes
from septa.core.errors import QubesVMError, QubesVMNotRunningError
from septa.core.networking import Networking
from septa.network import guest_config, links


class _Runtime:
    """What Networking asks of the runtime, for qubes that 'run' by name."""

    def __init__(self, app: Qubes, running: set[str]) -> None:
        self.app = app
        self.running = running
        self.links = {name: object() for name in running}

    def power_state(self, vm: Any) -> str:
        return "Running" if vm.name in self.running else "Halted"


@pytest.fixture
def app() -> Qubes:
    registry = store.load(paths.current())
    tpl = registry.create_vm("TemplateVM", "debian-12", "black")
    registry.set("default_template", tpl)
    registry.create_vm("AppVM", "sys-net", "red", properties={"provides_network": "True"})
    registry.create_vm("AppVM", "sys-firewall", "green",
                       properties={"provides_network": "True", "netvm": "sys-net"})
    registry.set("default_netvm", registry.domains["sys-firewall"])
    registry.create_vm("AppVM", "work", "blue")
    registry.create_vm("AppVM", "offline", "gray", properties={"netvm": ""})
    return registry


def _net(app: Qubes, *running: str) -> Networking:
    return Networking(_Runtime(app, set(running)))  # type: ignore[arg-type]


def test_link_names_derive_from_the_client_qid() -> None:
    assert links.backend_nic(5) == "vif5"
    assert links.backend_interface(300) == "vif300"
    assert links.backend_mac(0x010203) == "fe:ff:ff:01:02:03"
    assert links.uplink_mac(7) == "52:54:00:00:00:07"
    assert links.link_socket(Path("/run/x"), 12) == Path("/run/x/12.sock")
    with pytest.raises(ValueError):
        links.backend_mac(1 << 24)


def test_a_netvm_without_netvm_still_has_an_address_to_serve(app: Qubes) -> None:
    net, fw, work = (app.domains[n] for n in ("sys-net", "sys-firewall", "work"))
    assert net.get("ip") == f"10.137.0.{net.qid}" and net.get("gateway") == net.get("ip")
    assert fw.get("visible_gateway") == net.get("ip")
    assert work.get("visible_gateway") == fw.get("ip")
    assert app.domains["offline"].get("ip") is None


def test_configuration_of_a_client_and_of_the_uplink_netvm(app: Qubes) -> None:
    net, fw, work = (app.domains[n] for n in ("sys-net", "sys-firewall", "work"))
    net.features["uplink"] = "slirp"
    networking = _net(app)
    client = networking.configuration(work)["network"]["client"]
    assert client == {"mac": "00:16:3e:5e:6c:00", "ip": work.get("ip"),
                      "netmask": "255.255.255.255", "gateway": fw.get("ip"),
                      "dns": ["10.139.1.1", "10.139.1.2"]}
    top = networking.configuration(net)["network"]
    assert top["client"] is None and top["provides_network"] is True
    assert top["gateway"] == net.get("ip")
    assert top["uplink"] == {"mac": links.uplink_mac(net.qid), "address": "10.0.2.15/24",
                             "gateway": "10.0.2.2", "dns": ["10.0.2.3"]}
    assert networking.configuration(app.domains["offline"])["network"] == {
        "client": None, "uplink": None, "provides_network": False, "gateway": None}


def test_services_are_features_over_class_defaults(app: Qubes) -> None:
    tpl, net = app.domains["debian-12"], app.domains["sys-net"]
    assert Networking.services(tpl) == {"updates-proxy-setup": True}
    tpl.features["service.updates-proxy-setup"] = ""
    assert Networking.services(tpl) == {"updates-proxy-setup": False}
    net.features["service.qubes-updates-proxy"] = "1"
    net.features["service.cups"] = "0"
    assert Networking.services(net) == {"qubes-updates-proxy": True, "cups": False}


def test_a_netvm_with_running_clients_refuses_a_plain_shutdown(app: Qubes) -> None:
    networking = _net(app, "sys-net", "sys-firewall", "work")
    with pytest.raises(QubesVMError, match="other VMs connected to this VM: work"):
        networking.check_shutdown(app.domains["sys-firewall"], force=False)
    networking.check_shutdown(app.domains["sys-firewall"], force=True)
    networking.check_shutdown(app.domains["work"], force=False)


def test_a_running_qube_cannot_be_moved_to_a_halted_netvm(app: Qubes) -> None:
    networking = _net(app, "sys-net", "work")
    app.add_global_listener(networking.on_event)
    work = app.domains["work"]
    with pytest.raises(QubesVMNotRunningError, match="stopped NetVM: sys-firewall"):
        work.set("netvm", app.domains["sys-firewall"])
    assert work.property_is_default("netvm"), "the refused change is not stored"


def test_messages_carry_the_rules_as_lines() -> None:
    assert guest_config.firewall_message("vif5", "10.137.0.5", ["action=drop"]) == {
        "interface": "vif5", "ip": "10.137.0.5", "rules": ["action=drop"]}
    message = guest_config.attach_message("fe:ff:ff:00:00:05", "vif5", "work", "10.137.0.5",
                                          "10.137.0.3", iter(["action=accept"]))
    assert message["rules"] == ["action=accept"] and message["gateway"] == "10.137.0.3"


def test_expired_rules_leave_the_file_and_the_next_expiry_is_timed(app: Qubes) -> None:
    import asyncio
    import time

    from septa.core.firewall import load_rules, parse_rule, save_rules

    work = app.domains["work"]
    work.dir_path.mkdir(parents=True, exist_ok=True)
    path = work.dir_path / "firewall.xml"
    now = int(time.time())
    save_rules(path, [parse_rule(f"action=accept dst4=10.0.0.1 expire={now - 5}"),
                      parse_rule(f"action=accept dst4=10.0.0.2 expire={now + 3600}"),
                      parse_rule("action=drop")])
    networking = _net(app, "sys-net", "sys-firewall", "work")
    networking.attached["work"] = "sys-firewall"

    async def check() -> None:
        lines = networking.live_rules(work)
        assert lines == [f"action=accept expire={now + 3600} dst4=10.0.0.2/32", "action=drop"]
        handle = networking._expiry["work"]
        assert now + 3600 <= handle.when() - asyncio.get_running_loop().time() + time.time() \
            <= now + 3602
        networking._cancel_expiry("work")

    asyncio.run(check())
    assert [str(rule) for rule in load_rules(path)] == [
        f"action=accept expire={now + 3600} dst4=10.0.0.2/32", "action=drop"]
