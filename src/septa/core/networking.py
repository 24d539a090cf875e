"""The netvm chain of running qubes: links plugged and unplugged, agents configured,
firewall rules sent to the netvm that enforces them.

A qube with a ``netvm`` gets one NIC (its end of the link, where QEMU listens); the netvm
gets one NIC per client (connected to that link) and enforces the client's rules
(``septa.NetAttach`` / ``septa.FirewallSet`` in its agent). Starting a qube starts its
netvm chain first; a netvm that starts again is re-plugged into its running clients;
setting ``netvm`` (or ``default_netvm``) of a running qube re-wires it live. Expired
firewall rules are removed from the qube's ``firewall.xml`` when they expire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from septa.core.blocking import blocking
from septa.core.errors import QubesException, QubesVMError, QubesVMNotRunningError
from septa.core.firewall import FIREWALL_FILE, load_rules, save_rules, split_expired
from septa.core.vm import AdminVM, BaseVM, TemplateVM
from septa.hypervisor.nic import NicError, Nics, engine_nics
from septa.hypervisor.sockdir import link_socket_dir
from septa.network import guest_config, links

if TYPE_CHECKING:
    from septa.core.lifecycle import Runtime

log = logging.getLogger(__name__)

#: Feature that gives a qube a user-mode (slirp) uplink: ``uplink`` = ``slirp``.
UPLINK_FEATURE = "uplink"
#: Spare hot-plug ports of a netvm (one per client at most) and of any other qube.
NETVM_PORTS = 24
CLIENT_PORTS = 2
#: Services on by default, by class (Qubes: templates fetch updates through the proxy).
DEFAULT_SERVICES: dict[type[BaseVM], dict[str, bool]] = {
    TemplateVM: {"updates-proxy-setup": True},
}
RUNNING = ("Running", "Paused")
T = TypeVar("T")


class Networking:
    """Links, agent configuration and firewall of the qubes of one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.app = runtime.app
        #: client name -> name of the netvm its link is plugged into
        self.attached: dict[str, str] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._errors: list[BaseException] = []
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self._nics: Nics | None = None

    # ----- what a qube's domain needs ------------------------------------------------

    @staticmethod
    def netvm_of(vm: BaseVM) -> BaseVM | None:
        if isinstance(vm, AdminVM):
            return None
        netvm: BaseVM | None = vm.get_or("netvm", None)
        return netvm

    @staticmethod
    def uplink_mac(vm: BaseVM) -> str | None:
        if vm.features.get(UPLINK_FEATURE) == "slirp":
            return links.uplink_mac(vm.qid)
        return None

    @staticmethod
    def hotplug_ports(vm: BaseVM) -> int:
        return NETVM_PORTS if vm.get_or("provides_network", False) else CLIENT_PORTS

    def _running(self, vm: BaseVM) -> bool:
        return self.runtime.power_state(vm) in RUNNING and vm.name in self.runtime.links

    def clients(self, netvm: BaseVM) -> list[BaseVM]:
        """Running qubes whose link is (or should be) plugged into ``netvm``."""
        return [vm for vm in self.app.domains
                if vm is not netvm and self.runtime.power_state(vm) in RUNNING
                and self.netvm_of(vm) is netvm]

    def socket(self, vm: BaseVM) -> Path:
        return links.link_socket(link_socket_dir(self.app.paths.root), vm.qid)

    async def _nic(self, action: Callable[..., T], *args: Any) -> T:
        """One NIC operation of the engine, off the loop; its errors as QubesVMError."""
        if self._nics is None:
            self._nics = engine_nics(self.runtime.engine)
        try:
            return await blocking(action, self._nics, *args)
        except (NicError, OSError) as exc:
            raise QubesVMError(f"Network link: {exc}") from exc

    # ----- start and stop --------------------------------------------------------------

    async def start_chain(self, vm: BaseVM) -> None:
        """Start the qube's netvm (and so its whole chain) unless it runs."""
        netvm = self.netvm_of(vm)
        if netvm is None:
            return
        try:
            await self.runtime.ensure_running(netvm)
        except QubesException as exc:
            raise QubesVMError(f"Cannot start {vm.name}: its netvm {netvm.name} "
                               f"did not start: {exc}") from exc

    async def plug(self, vm: BaseVM) -> None:
        """Give the qube (created paused) its end of the link to its netvm."""
        await self._nic(Nics.add_nic, vm.name, links.CLIENT_NIC, vm.get("mac"),
                        self.socket(vm), True)

    async def attach(self, vm: BaseVM) -> None:
        """Plug the qube's link into its netvm and have the netvm serve it."""
        netvm = self.netvm_of(vm)
        if netvm is None:
            return
        if not self._running(netvm):
            raise QubesVMNotRunningError(f"Cannot attach {vm.name} to {netvm.name}: "
                                         f"{netvm.name} is not running")
        qid = vm.qid
        await self._nic(Nics.add_nic, netvm.name, links.backend_nic(qid),
                        links.backend_mac(qid), self.socket(vm), False)
        self.attached[vm.name] = netvm.name
        message = guest_config.attach_message(
            links.backend_mac(qid), links.backend_interface(qid), vm.name, vm.get("ip"),
            netvm.get_or("gateway", None), self.live_rules(vm))
        await self._call(netvm, "septa.NetAttach", message)

    async def detach(self, vm: BaseVM) -> None:
        """Unplug the qube's link from the netvm it is plugged into (errors are logged)."""
        name = self.attached.pop(vm.name, None)
        self._cancel_expiry(vm.name)
        if name is None or name not in self.app.domains:
            return
        netvm = self.app.domains[name]
        if not self._running(netvm):
            return
        qid = vm.qid
        try:
            await self._call(netvm, "septa.NetDetach", guest_config.detach_message(
                links.backend_interface(qid), vm.get_or("ip", None) or ""))
        except QubesException as exc:
            log.warning("%s: %s did not forget its link: %s", vm.name, name, exc)
        try:
            if not await self._nic(Nics.remove_nic, name, links.backend_nic(qid)):
                log.warning("%s: %s has not released its link yet", vm.name, name)
        except QubesException as exc:
            log.warning("%s: unplugging its link from %s failed: %s", vm.name, name, exc)

    async def configure(self, vm: BaseVM) -> None:
        """Send the qube its whole configuration (network and services)."""
        message = self.configuration(vm)
        network = message["network"]
        if not (message["services"] or network["client"] or network["uplink"]
                or network["provides_network"]):
            return
        try:
            await self._call(vm, "septa.Configure", message)
        except QubesException:
            if network["uplink"] or network["provides_network"]:
                raise
            log.exception("%s: its agent was not configured (it starts without network)",
                          vm.name)

    def configuration(self, vm: BaseVM) -> dict[str, Any]:
        netvm = self.netvm_of(vm)
        client = None
        if netvm is not None and vm.get_or("ip", None):
            client = guest_config.ClientSide(vm.get("mac"), vm.get("ip"),
                                             netvm.get_or("gateway", None) or "")
        return guest_config.configure_message(
            vm.name, self.services(vm), client, self.uplink_mac(vm),
            bool(vm.get_or("provides_network", False)), vm.get_or("ip", None))

    @staticmethod
    def services(vm: BaseVM) -> dict[str, bool]:
        """The qube's services: ``service.NAME`` features over the defaults of its class."""
        enabled: dict[str, bool] = {}
        for cls, defaults in DEFAULT_SERVICES.items():
            if isinstance(vm, cls):
                enabled.update(defaults)
        for feature in vm.features:
            if feature.startswith("service."):
                enabled[feature[len("service."):]] = vm.features[feature] not in ("", "0")
        return enabled

    async def started(self, vm: BaseVM) -> None:
        """After a netvm started: plug it into the clients that kept running."""
        if not vm.get_or("provides_network", False):
            return
        for client in self.clients(vm):
            if self.attached.get(client.name) is None and client.name in self.runtime.links:
                try:
                    await self.attach(client)
                except QubesException as exc:
                    log.error("%s: re-plugging into %s failed: %s", client.name, vm.name, exc)

    async def stopped(self, vm: BaseVM) -> None:
        """After a qube stopped: unplug it from its netvm; its clients lost their link."""
        await self.detach(vm)
        for client, netvm in list(self.attached.items()):
            if netvm == vm.name:
                del self.attached[client]

    def check_shutdown(self, vm: BaseVM, force: bool) -> None:
        """Qubes refuses to stop a netvm while qubes connected to it run."""
        if force or not vm.get_or("provides_network", False):
            return
        connected = sorted(c.name for c in self.clients(vm))
        if connected:
            raise QubesVMError("There are other VMs connected to this VM: "
                               + ", ".join(connected))

    def recover(self) -> None:
        """After a septad restart: running clients are plugged into their running netvm."""
        for vm in self.app.domains:
            netvm = self.netvm_of(vm)
            if netvm is not None and vm.name in self.runtime.links \
                    and netvm.name in self.runtime.links:
                self.attached[vm.name] = netvm.name
                self._schedule_expiry(vm)

    # ----- live changes -------------------------------------------------------------

    def on_event(self, subject: Any, event: str, kwargs: dict[str, Any]) -> None:
        """A global listener: netvm changes re-wire, firewall and service changes are
        sent to the agents concerned."""
        if isinstance(subject, BaseVM):
            if event == "property-pre-set:netvm":
                self._check_new_netvm(subject, kwargs.get("newvalue"))
            elif event in ("property-set:netvm", "property-reset:netvm"):
                self._later(self.rewire(subject))
            elif event == "firewall-changed":
                self._later(self.push_firewall(subject))
            elif event.startswith(("domain-feature-set:service.",
                                   "domain-feature-delete:service.")) \
                    and subject.name in self.runtime.links:
                self._later(self.configure(subject), report=False)
        elif event in ("property-set:default_netvm", "property-reset:default_netvm"):
            for vm in self.app.domains:
                if not isinstance(vm, AdminVM) and vm.property_is_default("netvm"):
                    self._later(self.rewire(vm))

    def _check_new_netvm(self, vm: BaseVM, netvm: BaseVM | None) -> None:
        if netvm is not None and self.runtime.power_state(vm) in RUNNING \
                and not self._running(netvm):
            raise QubesVMNotRunningError(
                f"Cannot dynamically attach to stopped NetVM: {netvm.name}")

    async def rewire(self, vm: BaseVM) -> None:
        """Move a running qube's link to its (new) netvm, or remove it."""
        if vm.name not in self.runtime.links:
            return
        netvm = self.netvm_of(vm)
        current = self.attached.get(vm.name)
        if netvm is not None and current == netvm.name:
            return
        had_nic = links.CLIENT_NIC in await self._nic(Nics.nic_ids, vm.name)
        await self.detach(vm)
        if netvm is None:
            if had_nic:
                await self._nic(Nics.remove_nic, vm.name, links.CLIENT_NIC)
        else:
            if not had_nic:
                await self.plug(vm)
            await self.attach(vm)
        await self.configure(vm)

    async def push_firewall(self, vm: BaseVM) -> None:
        """Send the qube's rules to the netvm that serves it."""
        name = self.attached.get(vm.name)
        if name is None or name not in self.app.domains:
            return
        message = guest_config.firewall_message(
            links.backend_interface(vm.qid), vm.get("ip"), self.live_rules(vm))
        await self._call(self.app.domains[name], "septa.FirewallSet", message)

    def live_rules(self, vm: BaseVM) -> list[str]:
        """The qube's rules without the expired ones (which leave its file for good)."""
        path = vm.dir_path / FIREWALL_FILE
        rules = load_rules(path)
        live, next_expiry = split_expired(rules, int(time.time()))
        if len(live) != len(rules):
            save_rules(path, live)
        self._schedule_expiry(vm, next_expiry)
        return [str(rule) for rule in live]

    def _schedule_expiry(self, vm: BaseVM, when: int | None = None) -> None:
        self._cancel_expiry(vm.name)
        if when is None:
            if vm.name not in self.attached:
                return
            _, when = split_expired(load_rules(vm.dir_path / FIREWALL_FILE), int(time.time()))
            if when is None:
                return
        loop = asyncio.get_running_loop()
        delay = max(0.0, when - time.time()) + 0.5
        self._expiry[vm.name] = loop.call_later(
            delay, lambda: self._later(self.push_firewall(vm), report=False))

    def _cancel_expiry(self, name: str) -> None:
        handle = self._expiry.pop(name, None)
        if handle is not None:
            handle.cancel()

    # ----- background work ----------------------------------------------------------

    def _later(self, work: Awaitable[None], report: bool = True) -> None:
        """Run ``work`` in the background; its error goes to the next :meth:`settle`
        when ``report`` (the caller of an Admin API change waits for it), else to the log."""
        async def run() -> None:
            try:
                await work
            except Exception as exc:  # noqa: BLE001 - reported by settle() or logged
                log.error("network: %s", exc)
                if report:
                    self._errors.append(exc)

        task = asyncio.get_running_loop().create_task(run())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        """Wait for the re-wiring the last changes started; raise its first error."""
        while self._pending:
            await asyncio.gather(*list(self._pending))
        errors, self._errors = self._errors, []
        if errors:
            raise QubesVMError(f"The network could not follow the change: {errors[0]}")

    async def _call(self, vm: BaseVM, service: str, message: dict[str, Any]) -> None:
        mux = self.runtime.mux_for(vm)
        status, _, err = await mux.run(
            {"service": service, "arg": "", "source": "dom0", "user": "root",
             "requested_target": vm.name},
            json.dumps(message).encode())
        if status != 0:
            reason = err.decode("utf-8", errors="replace").strip().splitlines()
            raise QubesVMError(f"{vm.name}: {service} failed: "
                               f"{reason[-1] if reason else f'exit status {status}'}")
