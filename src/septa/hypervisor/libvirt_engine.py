"""The engine: run, stop, pause and watch qubes as transient libvirt domains.

Domains are transient (``createXML``): a qube that stops leaves no definition behind.
Each Septa instance names its domains with a prefix derived from its ``SEPTA_ROOT``, so
test instances on one libvirtd never collide with each other or with the real one.
Blocking libvirt calls are plain methods (the daemon runs them in an executor);
lifecycle events arrive on the asyncio loop through libvirt's asyncio event glue.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
from lxml import etree

from septa.core.errors import QubesVMError
from septa.hypervisor.domain_xml import domain_xml
from septa.hypervisor.spec import AGENT_PORT, DomainSpec

log = logging.getLogger(__name__)
DEFAULT_URI = "qemu:///system"
LifecycleCallback = Callable[[str, str], None]

_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "NA",
    libvirt.VIR_DOMAIN_RUNNING: "Running",
    libvirt.VIR_DOMAIN_BLOCKED: "Running",
    libvirt.VIR_DOMAIN_PAUSED: "Paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "Halting",
    libvirt.VIR_DOMAIN_SHUTOFF: "Halted",
    libvirt.VIR_DOMAIN_CRASHED: "Crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "Suspended",
}
_EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_STARTED: "started",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "paused",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "unpaused",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "halting",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "crashed",
}
_event_loop_registered = False
_TEST_PREFIX = re.compile(r"\Asepta-[0-9a-f]{8}-")


@dataclass(frozen=True)
class DomainStats:
    """``admin.vm.Stats`` / ``CurrentState`` figures of one running qube."""

    memory_kb: int
    maxmem_kb: int
    cputime_ns: int
    vcpus: int


def instance_prefix(root: Path) -> str:
    """``""`` for the real instance (root ``/``), else a short tag of the root path."""
    if str(root) in ("/", ""):
        return ""
    return "septa-" + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8] + "-"


class Engine:
    """One libvirt connection serving the qubes of one Septa instance."""

    def __init__(self, root: Path, uri: str | None = None) -> None:
        self.uri = uri or os.environ.get("SEPTA_LIBVIRT_URI", DEFAULT_URI)
        self.prefix = instance_prefix(root)
        self._conn: libvirt.virConnect | None = None
        self._callbacks: list[LifecycleCallback] = []

    def enable_events(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver lifecycle events on ``loop``; call before the first use of the engine."""
        global _event_loop_registered
        if not _event_loop_registered:
            import libvirtaio

            libvirtaio.virEventRegisterAsyncIOImpl(loop=loop)
            _event_loop_registered = True

    @property
    def conn(self) -> libvirt.virConnect:
        if self._conn is None or not self._conn.isAlive():
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise QubesVMError(f"Cannot connect to libvirt at {self.uri}: {exc}") from exc
            if _event_loop_registered:
                self._conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_event, None)
        return self._conn

    def on_lifecycle(self, callback: LifecycleCallback) -> None:
        """``callback(qube_name, event)`` for started/stopped/paused/unpaused/crashed."""
        self._callbacks.append(callback)

    def _on_event(self, conn: Any, dom: Any, event: int, detail: int, opaque: Any) -> None:
        name = dom.name()
        if not self._ours(name):
            return
        kind = _EVENTS.get(event)
        if kind is None:
            return
        for callback in list(self._callbacks):
            try:
                callback(name[len(self.prefix):], kind)
            except Exception:  # noqa: BLE001 - one bad handler must not stop the others
                log.exception("lifecycle handler failed")

    def domain_name(self, vm_name: str) -> str:
        return self.prefix + vm_name

    def _lookup(self, vm_name: str) -> libvirt.virDomain | None:
        try:
            return self.conn.lookupByName(self.domain_name(vm_name))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise QubesVMError(f"libvirt: {exc}") from exc

    def _domain(self, vm_name: str) -> libvirt.virDomain:
        dom = self._lookup(vm_name)
        if dom is None:
            raise QubesVMError(f"Domain is not running: {vm_name}")
        return dom

    def start(self, spec: DomainSpec, paused: bool = False) -> None:
        """Create the qube's transient domain; with ``paused`` its vCPUs wait for
        :meth:`unpause` (devices can be hot-added before the guest runs)."""
        xml = domain_xml(spec)
        flags = libvirt.VIR_DOMAIN_START_PAUSED if paused else 0
        try:
            self.conn.createXML(xml, flags)
        except libvirt.libvirtError as exc:
            raise QubesVMError(f"Failed to start {spec.name}: {exc}") from exc

    def state(self, vm_name: str) -> str:
        dom = self._lookup(vm_name)
        if dom is None:
            return "Halted"
        try:
            state, _reason = dom.state()
        except libvirt.libvirtError:
            return "Halted"
        return _STATES.get(state, "NA")

    def running(self) -> list[str]:
        """Names of this instance's qubes that have a domain now."""
        return [dom.name()[len(self.prefix):]
                for dom in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
                if self._ours(dom.name())]

    def _ours(self, domain_name: str) -> bool:
        if self.prefix:
            return domain_name.startswith(self.prefix)
        return _TEST_PREFIX.match(domain_name) is None

    def _act(self, vm_name: str, action: str, call: Callable[[libvirt.virDomain], Any]) -> None:
        try:
            call(self._domain(vm_name))
        except libvirt.libvirtError as exc:
            raise QubesVMError(f"Failed to {action} {vm_name}: {exc}") from exc

    def shutdown_acpi(self, vm_name: str) -> None:
        self._act(vm_name, "shut down", lambda dom: dom.shutdown())

    def kill(self, vm_name: str) -> None:
        self._act(vm_name, "kill", lambda dom: dom.destroy())

    def pause(self, vm_name: str) -> None:
        self._act(vm_name, "pause", lambda dom: dom.suspend())

    def unpause(self, vm_name: str) -> None:
        self._act(vm_name, "unpause", lambda dom: dom.resume())

    def stats(self, vm_name: str) -> DomainStats:
        dom = self._domain(vm_name)
        try:
            _state, maxmem, memory, vcpus, cputime = dom.info()
        except libvirt.libvirtError as exc:
            raise QubesVMError(f"Failed to read the state of {vm_name}: {exc}") from exc
        return DomainStats(memory, maxmem, cputime, vcpus)

    def _live_xml_value(self, vm_name: str, xpath: str, what: str) -> str:
        xml = etree.fromstring(self._domain(vm_name).XMLDesc(0).encode())
        value = xml.xpath(f"string({xpath})")
        if not value:
            raise QubesVMError(f"{vm_name} has no {what}")
        return str(value)

    def console_pty(self, vm_name: str) -> str:
        """The host pty of the qube's console (for ``admin.vm.Console`` / qvm-console)."""
        return self._live_xml_value(vm_name, "devices/console/source/@path", "console")

    def agent_socket(self, vm_name: str) -> Path:
        """The host end of the agent's virtio-serial port (a path libvirt chose)."""
        return Path(self._live_xml_value(
            vm_name, f"devices/channel[target/@name='{AGENT_PORT}']/source/@path",
            "agent channel"))
