"""Qube-to-qube links: virtio-net NICs hot-plugged into running domains through QMP.

A link is a QEMU ``stream`` netdev over a unix socket (one side listens, the other
connects) and a ``virtio-net-pci`` device on a free ``pcie-root-port`` (the spare ports
of :attr:`DomainSpec.hotplug_ports`). Everything is read back from QEMU (QOM:
``qom-list``, ``parent_bus``) on each call, so nothing is lost when septad restarts.

QEMU ids: device ``septa-nic-<nic_id>``, netdev ``septa-net-<nic_id>``. Ids are reused:
:meth:`Nics.remove_nic` waits (bounded) until the guest has released the device; while a
removal is still pending, adding the same id fails with :class:`NicError`.

Measured with libvirt 9.0, QEMU 7.2, q35 under TCG, the debian-12 template (kernel
6.1 cloud, virtio_net):
- netdev_add + device_add take ~40 ms; the guest sees the NIC at once (q35's ACPI PCI
  hot-plug), named ``enp<port>s0`` by udev; two guests ping each other over the link.
- A NIC added while the domain is paused before its first run is present at boot.
- device_del completes (device gone) ~0.1 s later in a booted guest;
  netdev_del right after device_del closes the socket at once (the NIC loses its link),
  the netdev id stays taken until the device is gone.
- The listening side accepts a new client after the previous one disconnected (its
  netdev_del); the new client's guest pings over the same server NIC.
- A connecting netdev_add succeeds even when nobody listens (QEMU connects
  asynchronously and does not retry), so the socket's presence is checked first.
- QMP errors come back as ``{"error": ...}`` replies, not as libvirt errors.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import libvirt
import libvirt_qemu

from septa.hypervisor.libvirt_engine import Engine

DEVICE_PREFIX = "septa-nic-"
NETDEV_PREFIX = "septa-net-"
PERIPHERALS = ("/machine/peripheral", "/machine/peripheral-anon")
REMOVE_TIMEOUT = 10.0
_NIC_ID = re.compile(r"\A[A-Za-z0-9_-]{1,40}\Z")
_MAC = re.compile(r"\A[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
_SUN_PATH_MAX = 107


class NicError(Exception):
    """A link NIC could not be added or removed (message says why)."""


class DomainGone(NicError):
    """The qube has no running domain."""


class QmpError(Exception):
    """QEMU answered a QMP command with an error; ``error_class`` is QEMU's class."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        super().__init__(f"{command}: {desc}")
        self.error_class = error_class
        self.desc = desc


class Monitor(Protocol):
    """Runs QMP commands in the QEMU of a qube's domain."""

    def execute(self, vm_name: str, command: str,
                arguments: dict[str, Any] | None = None) -> Any: ...


class LibvirtMonitor:
    """QMP through libvirt (``virDomainQemuMonitorCommand``) on domains named
    ``<prefix><vm_name>`` (the engine's :meth:`domain_name`)."""

    def __init__(self, connect: Callable[[], libvirt.virConnect], prefix: str) -> None:
        self._connect = connect
        self._prefix = prefix

    def execute(self, vm_name: str, command: str,
                arguments: dict[str, Any] | None = None) -> Any:
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        try:
            dom = self._connect().lookupByName(self._prefix + vm_name)
            reply = json.loads(libvirt_qemu.qemuMonitorCommand(dom, json.dumps(message), 0))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise DomainGone(f"Domain is not running: {vm_name}") from exc
            raise NicError(f"QMP {command} in {vm_name} failed: {exc}") from exc
        if "error" in reply:
            error = reply["error"]
            raise QmpError(command, error.get("class", ""), error.get("desc", ""))
        return reply.get("return")


def device_id(nic_id: str) -> str:
    return DEVICE_PREFIX + nic_id


def netdev_id(nic_id: str) -> str:
    return NETDEV_PREFIX + nic_id


def netdev_args(nic_id: str, socket_path: Path, server: bool) -> dict[str, Any]:
    """``netdev_add`` arguments of a link's stream backend."""
    return {"type": "stream", "id": netdev_id(nic_id), "server": server,
            "addr": {"type": "unix", "path": str(socket_path)}}


def device_args(nic_id: str, mac: str, bus: str) -> dict[str, Any]:
    """``device_add`` arguments of a link's NIC on root port ``bus``."""
    return {"driver": "virtio-net-pci", "id": device_id(nic_id), "netdev": netdev_id(nic_id),
            "mac": mac, "bus": bus}


@dataclass(frozen=True)
class Layout:
    """The PCIe root ports of a domain and what sits on them, read from QOM (unlike
    ``query-pci``, QOM also answers before the guest has numbered its buses)."""

    ports: tuple[str, ...]
    used: frozenset[str]
    nics: tuple[str, ...]

    @property
    def free_ports(self) -> list[str]:
        return [port for port in self.ports if port not in self.used]


def _port_order(name: str) -> tuple[int, str]:
    digits = re.sub(r"\D", "", name)
    return (int(digits) if digits else 0, name)


def read_layout(monitor: Monitor, vm_name: str) -> Layout:
    """Where ``vm_name``'s devices are: one ``qom-list`` and a ``qom-get parent_bus``
    per device (a bus path ends with the id of its bridge: ``.../pci.7/pci.7``)."""
    ports: list[str] = []
    used: set[str] = set()
    nics: list[str] = []
    for container in PERIPHERALS:
        try:
            children = monitor.execute(vm_name, "qom-list", {"path": container})
        except QmpError:
            continue
        for child in children:
            kind = str(child.get("type", ""))
            if not kind.startswith("child<"):
                continue
            name = child["name"]
            if kind == "child<pcie-root-port>":
                ports.append(name)
                continue
            if name.startswith(DEVICE_PREFIX):
                nics.append(name[len(DEVICE_PREFIX):])
            try:
                bus = monitor.execute(vm_name, "qom-get",
                                      {"path": f"{container}/{name}", "property": "parent_bus"})
            except QmpError:
                continue
            if isinstance(bus, str) and bus:
                used.add(bus.rstrip("/").rsplit("/", 1)[-1])
    return Layout(tuple(sorted(ports, key=_port_order)), frozenset(used),
                  tuple(sorted(nics)))


def _check(nic_id: str, mac: str | None = None) -> None:
    if not _NIC_ID.match(nic_id):
        raise NicError(f"Invalid NIC id {nic_id!r}")
    if mac is not None and not _MAC.match(mac):
        raise NicError(f"Invalid MAC address {mac!r}")


class Nics:
    """Adds and removes the link NICs of running qubes; blocking calls (run them in
    an executor), serialised per instance so two adds never pick the same port."""

    def __init__(self, monitor: Monitor, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.monitor = monitor
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()

    def _layout(self, vm_name: str) -> Layout:
        return read_layout(self.monitor, vm_name)

    def _try(self, vm_name: str, command: str, arguments: dict[str, Any]) -> None:
        try:
            self.monitor.execute(vm_name, command, arguments)
        except QmpError:
            pass

    def nic_ids(self, vm_name: str) -> list[str]:
        """Ids of the link NICs present in ``vm_name`` (including one whose removal the
        guest has not completed yet); none when it does not run."""
        try:
            return list(self._layout(vm_name).nics)
        except DomainGone:
            return []

    def add_nic(self, vm_name: str, nic_id: str, mac: str, socket_path: Path,
                server: bool) -> None:
        """Hot-add a NIC with ``mac`` whose traffic goes through ``socket_path``:
        listened on when ``server`` (QEMU replaces a stale file), else connected to."""
        _check(nic_id, mac)
        if len(str(socket_path)) > _SUN_PATH_MAX:
            raise NicError(f"Link socket path is too long for a unix socket: {socket_path}")
        if server and not socket_path.parent.is_dir():
            raise NicError(f"No directory for the link socket {socket_path}")
        if not server and not socket_path.is_socket():
            raise NicError(f"Link socket {socket_path} does not exist (is the other side "
                           "running?)")
        with self._lock:
            layout = self._layout(vm_name)
            if nic_id in layout.nics:
                raise NicError(f"{vm_name} already has NIC {nic_id} (or its removal is "
                               "still pending in the guest)")
            ports = layout.free_ports
            if not ports:
                raise NicError(f"{vm_name} has no free PCIe port for another NIC")
            # a netdev left by an add interrupted between its two steps
            self._try(vm_name, "netdev_del", {"id": netdev_id(nic_id)})
            try:
                self.monitor.execute(vm_name, "netdev_add",
                                     netdev_args(nic_id, socket_path, server))
            except QmpError as exc:
                raise NicError(f"QEMU of {vm_name} refused the link socket {socket_path}: "
                               f"{exc.desc}") from exc
            try:
                self.monitor.execute(vm_name, "device_add", device_args(nic_id, mac, ports[0]))
            except QmpError as exc:
                self._try(vm_name, "netdev_del", {"id": netdev_id(nic_id)})
                raise NicError(f"QEMU of {vm_name} refused NIC {nic_id}: {exc.desc}") from exc

    def remove_nic(self, vm_name: str, nic_id: str, timeout: float = REMOVE_TIMEOUT) -> bool:
        """Unplug NIC ``nic_id`` and close its socket at once; wait up to ``timeout``
        seconds for the guest to release the device. True when it is gone (its id and
        port are free again); already absent counts as gone."""
        _check(nic_id)
        try:
            return self._remove(vm_name, nic_id, timeout)
        except DomainGone:
            return True

    def _remove(self, vm_name: str, nic_id: str, timeout: float) -> bool:
        with self._lock:
            present = nic_id in self._layout(vm_name).nics
            if present:
                self._try(vm_name, "device_del", {"id": device_id(nic_id)})
            self._try(vm_name, "netdev_del", {"id": netdev_id(nic_id)})
        if not present:
            return True
        deadline = self._clock() + timeout
        delay = 0.02
        while nic_id in self._layout(vm_name).nics:
            if self._clock() >= deadline:
                return False
            self._sleep(delay)
            delay = min(delay * 2, 0.5)
        return True


def engine_nics(engine: Engine) -> Nics:
    """The NICs of ``engine``'s domains, over its libvirt connection."""
    return Nics(LibvirtMonitor(lambda: engine.conn, engine.prefix))
