"""Link NICs: the QMP commands they send, port choice read back from QOM, failure undo,
removal that waits (boundedly) for the guest, and the link socket directory."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from septa.hypervisor import sockdir
from septa.hypervisor.nic import (
    DomainGone,
    NicError,
    Nics,
    QmpError,
    device_args,
    netdev_args,
)


class FakeQemu:
    """The QMP side of one domain: root ports, devices on them, netdevs; a device_del
    completes after ``unplug_polls`` QOM listings (never when None)."""

    def __init__(self, ports: int = 3, used: tuple[str, ...] = ("pci.1",),
                 unplug_polls: int | None = 1) -> None:
        self.ports = [f"pci.{n}" for n in range(1, ports + 1)]
        self.devices: dict[str, str] = {f"disk{n}": port for n, port in enumerate(used)}
        self.netdevs: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, int] = {}
        self.unplug_polls = unplug_polls
        self.calls: list[tuple[str, dict[str, Any] | None]] = []
        self.refuse: set[str] = set()
        self.running = True

    def execute(self, vm_name: str, command: str,
                arguments: dict[str, Any] | None = None) -> Any:
        if not self.running:
            raise DomainGone(f"Domain is not running: {vm_name}")
        self.calls.append((command, arguments))
        args = arguments or {}
        if command in self.refuse:
            raise QmpError(command, "GenericError", "refused")
        if command == "qom-list":
            if args["path"] != "/machine/peripheral":
                raise QmpError(command, "DeviceNotFound", "no such path")
            self._progress_unplugs()
            return ([{"name": "type", "type": "string"}]
                    + [{"name": p, "type": "child<pcie-root-port>"} for p in self.ports]
                    + [{"name": d, "type": "child<virtio-net-pci>"} for d in self.devices])
        if command == "qom-get":
            name = args["path"].rsplit("/", 1)[-1]
            return f"/machine/peripheral/{self.devices[name]}/{self.devices[name]}"
        if command == "netdev_add":
            if args["id"] in self.netdevs:
                raise QmpError(command, "GenericError", "Duplicate ID")
            self.netdevs[args["id"]] = args
            return {}
        if command == "netdev_del":
            if args["id"] not in self.netdevs:
                raise QmpError(command, "DeviceNotFound", "not found")
            self.netdevs[args["id"]]["deleted"] = True
            if not any(n == args["id"] for n in self._attached()):
                del self.netdevs[args["id"]]
            return {}
        if command == "device_add":
            if args["bus"] in self.devices.values():
                raise QmpError(command, "GenericError", "slot occupied")
            if args["netdev"] not in self.netdevs:
                raise QmpError(command, "GenericError", "can't find value")
            self.devices[args["id"]] = args["bus"]
            self.netdevs[args["netdev"]]["device"] = args["id"]
            return {}
        if command == "device_del":
            if args["id"] not in self.devices:
                raise QmpError(command, "DeviceNotFound", "not found")
            if self.unplug_polls is not None:
                self.pending.setdefault(args["id"], self.unplug_polls)
            return {}
        raise AssertionError(command)

    def _attached(self) -> Iterator[str]:
        for name, netdev in self.netdevs.items():
            if netdev.get("device") in self.devices:
                yield name

    def _progress_unplugs(self) -> None:
        for device, polls in list(self.pending.items()):
            if polls <= 0:
                del self.pending[device]
                del self.devices[device]
                self.netdevs = {n: d for n, d in self.netdevs.items()
                                if not (d.get("device") == device and d.get("deleted"))}
            else:
                self.pending[device] = polls - 1

    def commands(self) -> list[str]:
        return [c for c, _ in self.calls if not c.startswith("qom-")]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sock(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "work.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    yield path
    listener.close()


def nics(qemu: FakeQemu) -> Nics:
    clock = Clock()
    return Nics(qemu, sleep=clock.sleep, clock=clock)


def test_command_arguments() -> None:
    assert netdev_args("vif5", Path("/run/qubes/links/work.sock"), True) == {
        "type": "stream", "id": "septa-net-vif5", "server": True,
        "addr": {"type": "unix", "path": "/run/qubes/links/work.sock"}}
    assert device_args("vif5", "fe:ff:ff:00:00:05", "pci.9") == {
        "driver": "virtio-net-pci", "id": "septa-nic-vif5", "netdev": "septa-net-vif5",
        "mac": "fe:ff:ff:00:00:05", "bus": "pci.9"}


def test_add_uses_the_first_free_port_and_is_listed(tmp_path: Path, sock: Path) -> None:
    qemu = FakeQemu(ports=12, used=("pci.1", "pci.2"))
    links = nics(qemu)
    links.add_nic("netvm", "vif5", "fe:ff:ff:00:00:05", sock, server=False)
    links.add_nic("netvm", "vif6", "fe:ff:ff:00:00:06", sock, server=False)
    assert qemu.devices["septa-nic-vif5"] == "pci.3"
    assert qemu.devices["septa-nic-vif6"] == "pci.4"
    assert links.nic_ids("netvm") == ["vif5", "vif6"]
    links.add_nic("work", "uplink", "00:16:3e:5e:6c:00", tmp_path / "new.sock", server=True)
    assert qemu.netdevs["septa-net-uplink"]["server"] is True


def test_ports_are_taken_in_numeric_order(sock: Path) -> None:
    qemu = FakeQemu(ports=12, used=tuple(f"pci.{n}" for n in range(1, 10)))
    qemu.ports.reverse()
    nics(qemu).add_nic("netvm", "vif5", "fe:ff:ff:00:00:05", sock, server=False)
    assert qemu.devices["septa-nic-vif5"] == "pci.10"


def test_a_client_needs_the_listening_socket(tmp_path: Path) -> None:
    qemu = FakeQemu()
    with pytest.raises(NicError, match="does not exist"):
        nics(qemu).add_nic("netvm", "vif5", "fe:ff:ff:00:00:05", tmp_path / "x.sock", False)
    assert qemu.calls == []


def test_no_free_port(sock: Path) -> None:
    qemu = FakeQemu(ports=1, used=("pci.1",))
    with pytest.raises(NicError, match="no free PCIe port"):
        nics(qemu).add_nic("netvm", "vif5", "fe:ff:ff:00:00:05", sock, False)
    assert "netdev_add" not in qemu.commands()


def test_refused_device_undoes_the_netdev(sock: Path) -> None:
    qemu = FakeQemu()
    qemu.refuse.add("device_add")
    with pytest.raises(NicError, match="refused NIC vif5"):
        nics(qemu).add_nic("netvm", "vif5", "fe:ff:ff:00:00:05", sock, False)
    assert qemu.netdevs == {}
    assert qemu.commands()[-1] == "netdev_del"


def test_refused_netdev(sock: Path) -> None:
    qemu = FakeQemu()
    qemu.refuse.add("netdev_add")
    with pytest.raises(NicError, match="refused the link socket"):
        nics(qemu).add_nic("netvm", "vif5", "fe:ff:ff:00:00:05", sock, False)
    assert "device_add" not in qemu.commands()


def test_leftover_netdev_of_an_interrupted_add_is_replaced(sock: Path) -> None:
    qemu = FakeQemu()
    qemu.netdevs["septa-net-vif5"] = {"id": "septa-net-vif5"}
    nics(qemu).add_nic("netvm", "vif5", "fe:ff:ff:00:00:05", sock, False)
    assert "septa-nic-vif5" in qemu.devices


def test_bad_ids_and_macs_are_refused(sock: Path) -> None:
    links = nics(FakeQemu())
    for nic_id, mac in (("a b", "fe:ff:ff:00:00:05"), ("", "fe:ff:ff:00:00:05"),
                        ("vif5", "FE:FF:FF:00:00:05"), ("vif5", "fe:ff:ff:00:00")):
        with pytest.raises(NicError, match="Invalid"):
            links.add_nic("netvm", nic_id, mac, sock, False)


def test_remove_unplugs_closes_and_frees_the_id(sock: Path) -> None:
    qemu = FakeQemu(unplug_polls=2)
    links = nics(qemu)
    links.add_nic("netvm", "vif5", "fe:ff:ff:00:00:05", sock, False)
    del qemu.calls[:]
    assert links.remove_nic("netvm", "vif5") is True
    assert qemu.commands() == ["device_del", "netdev_del"]
    assert links.nic_ids("netvm") == [] and qemu.netdevs == {}
    links.add_nic("netvm", "vif5", "fe:ff:ff:00:00:05", sock, False)
    assert links.nic_ids("netvm") == ["vif5"]


def test_remove_is_bounded_when_the_guest_never_releases(sock: Path) -> None:
    qemu = FakeQemu(unplug_polls=None)
    links = nics(qemu)
    links.add_nic("netvm", "vif5", "fe:ff:ff:00:00:05", sock, False)
    assert links.remove_nic("netvm", "vif5", timeout=3) is False
    assert qemu.netdevs["septa-net-vif5"]["deleted"], "the link is cut anyway"
    with pytest.raises(NicError, match="still pending"):
        links.add_nic("netvm", "vif5", "fe:ff:ff:00:00:05", sock, False)


def test_remove_tolerates_absent_nics_and_stopped_domains() -> None:
    qemu = FakeQemu()
    links = nics(qemu)
    assert links.remove_nic("netvm", "vif5") is True
    qemu.running = False
    assert links.remove_nic("netvm", "vif5") is True
    assert links.nic_ids("netvm") == []


def test_link_socket_dir_belongs_to_qemus_user(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "qemu.conf"
    conf.write_text('#user = "nobody"\nuser = "+4242"\ngroup = "+4343"\n')
    assert sockdir.qemu_ids(conf) == (4242, 4343)
    chowned: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "chown", lambda path, uid, gid, **kw: chowned.append((uid, gid)))
    path = sockdir.link_socket_dir(tmp_path / "root", conf)
    assert path == tmp_path / "root/run/qubes/links"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert chowned == [(4242, 4343)]
    path.chmod(0o755)
    sockdir.link_socket_dir(tmp_path / "root", conf)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_qemu_user_defaults_when_qemu_conf_is_silent(tmp_path: Path) -> None:
    conf = tmp_path / "qemu.conf"
    conf.write_text('# user = "root"\n')
    uid, _gid = sockdir.qemu_ids(conf)
    try:
        import pwd

        expected = pwd.getpwnam(sockdir.DEFAULT_QEMU_USER).pw_uid
    except KeyError:
        expected = 0
    assert uid == expected
