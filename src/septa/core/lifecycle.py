"""Running qubes: start, shutdown, kill, pause, unpause, and noticing a qube that stops.

The order of a start is: checks, the netvm chain started, volumes started (snapshots
taken), the domain created (paused while its network link is plugged in), the agent's
READY awaited within ``qrexec_timeout``, the agent configured
(:mod:`septa.core.networking`). Any failure undoes what was done (link unplugged, domain
killed, volumes stopped) and reports the tail of the console log. A domain
that stops for any reason (shutdown, kill, crash, poweroff inside) is noticed through
the engine's lifecycle events: its volumes are stopped once and ``domain-shutdown`` fires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from septa.core.blocking import blocking
from septa.core.disposables import Disposables
from septa.core.errors import (
    QubesException,
    QubesVMError,
    QubesVMNotHaltedError,
    QubesVMNotStartedError,
    QubesVMShutdownTimeout,
)
from septa.core.networking import Networking
from septa.hypervisor.accel import choose_accel
from septa.hypervisor.agent_link import AgentLink
from septa.hypervisor.console import console_tail
from septa.hypervisor.libvirt_engine import DomainStats, Engine
from septa.hypervisor.spec import DiskSpec, DomainSpec
from septa.qrexec.mux import CallMux
from septa.storage.kernel import KernelPool

if TYPE_CHECKING:
    from septa.core.app import Qubes
    from septa.core.vm import BaseVM

log = logging.getLogger(__name__)
RUNNING_STATES = ("Running", "Paused", "Transient", "Halting")


class Runtime:
    """The running side of a registry: one engine, one agent link per running qube."""

    def __init__(self, app: Qubes, engine: Engine,
                 save: Callable[[Qubes], None] | None = None) -> None:
        self.app = app
        self.engine = engine
        self.save = save
        self.states: dict[str, str] = {}
        self.links: dict[str, AgentLink] = {}
        self.muxes: dict[str, CallMux] = {}
        #: called with each new call multiplexer (septad's relay of the calls qubes make)
        self.on_mux: Callable[[CallMux], None] | None = None
        self._starting: set[str] = set()
        self._halted: dict[str, asyncio.Event] = {}
        #: the starts under way (their result: started or not), which a call's autostart
        #: waits for instead of racing
        self._starts: dict[str, asyncio.Future[bool]] = {}
        self.disposables = Disposables(self)
        app.add_global_listener(self.disposables.on_event)
        self.network = Networking(self)
        app.add_global_listener(self.network.on_event)
        engine.on_lifecycle(self._on_lifecycle)

    # ----- helpers ------------------------------------------------------------------

    def power_state(self, vm: BaseVM) -> str:
        return self.states.get(vm.name, "Halted")

    def runtime_dir(self, vm: BaseVM) -> Path:
        return self.app.paths.runtime_dir / vm.name

    def console_log(self, vm: BaseVM) -> Path:
        return self.app.paths.log_dir / f"console-{vm.name}.log"

    def _halted_event(self, name: str) -> asyncio.Event:
        return self._halted.setdefault(name, asyncio.Event())

    # ----- recovery after a daemon restart ------------------------------------------

    async def recover(self) -> None:
        """Adopt qubes that kept running while the daemon was away; stop stale volumes."""
        try:
            running = set(await blocking(self.engine.running))
        except QubesException as exc:
            log.warning("no hypervisor: %s (qubes cannot start until it is there)", exc)
            return
        for vm in self.app.domains:
            if vm.name in running:
                self.states[vm.name] = await blocking(self.engine.state, vm.name)
                asyncio.get_running_loop().create_task(self._reconnect(vm))
            elif type(vm).__name__ != "AdminVM":
                with contextlib.suppress(QubesException):
                    await blocking(self._stop_running_volumes, vm)
                if vm.get_or("auto_cleanup", False):
                    await self.remove_disposable(vm)  # it stopped while septad was away
        self.network.recover()
        await self.disposables.recover()

    @staticmethod
    def _stop_running_volumes(vm: BaseVM) -> None:
        if any(v.is_running() for n, v in vm.storage.volumes.items() if n != "kernel"):
            vm.storage.stop()

    async def _reconnect(self, vm: BaseVM) -> None:
        link = AgentLink(vm.name, self.engine.agent_socket(vm.name))
        try:
            await link.connect(10)
            link.request_hello()
            await link.wait_ready(vm.get("qrexec_timeout"))
        except (QubesException, TimeoutError, OSError) as exc:
            log.warning("%s: agent did not answer after a daemon restart: %s", vm.name, exc)
            await link.close()
            return
        self.links[vm.name] = link
        self._serve_calls(vm)

    # ----- start --------------------------------------------------------------------

    def _check_can_start(self, vm: BaseVM) -> None:
        if type(vm).__name__ == "AdminVM" or self.power_state(vm) != "Halted":
            raise QubesVMNotHaltedError(f"Domain is running: {vm.name}")
        if type(vm).__name__ == "TemplateVM":
            users = [other.name for other in self.app.domains
                     if other.template_or_none() is vm and self.power_state(other) != "Halted"]
            if users:
                raise QubesVMError(f"Cannot start template {vm.name} while qubes based on it "
                                   f"run: {', '.join(sorted(users))}")
        template = vm.template_or_none()
        if template is not None and type(template).__name__ == "AppVM":
            inner = template.template_or_none()
            if inner is not None and self.power_state(inner) != "Halted":
                raise QubesVMError(f"Cannot start {vm.name} while its template's template "
                                   f"{inner.name} runs")

    @staticmethod
    def _kernel_files(vm: BaseVM) -> tuple[Path, Path] | None:
        """(vmlinuz, initramfs) of the qube's kernel; None for a firmware (hvm) boot."""
        kernel = vm.get_or("kernel", "") or ""
        if kernel:
            pool = vm.storage.pool_of("kernel") if "kernel" in vm.storage.configs else None
            if not isinstance(pool, KernelPool):
                raise QubesVMError(f"{vm.name}: no kernel pool to boot kernel {kernel}")
            return pool.kernel_files(kernel)
        if vm.get("virt_mode") != "hvm":
            raise QubesVMError(f"{vm.name} has no kernel to boot: set its kernel property (or "
                               "default_kernel), or virt_mode=hvm to boot from its own disk")
        return None

    def _domain_spec(self, vm: BaseVM, accel: str,
                     kernel_files: tuple[Path, Path] | None) -> DomainSpec:
        vmlinuz, initrd = kernel_files if kernel_files is not None else (None, None)
        cmdline = f"{vm.get('kernelopts')} septa.qube={vm.name}"
        if vm.get("debug"):
            cmdline += " debug"
        disks = tuple(
            DiskSpec(Path(device.path), target, device.format, device.readonly,
                     device.source_type, tuple((b.path, b.format) for b in device.backing))
            for target, device in vm.storage.disks())
        memory = vm.get("memory")
        return DomainSpec(
            name=self.engine.domain_name(vm.name), uuid=vm.uuid, memory_mib=memory,
            maxmem_mib=max(memory, vm.get("maxmem") or memory), vcpus=vm.get("vcpus"),
            kernel=vmlinuz, initrd=initrd, cmdline=cmdline, disks=disks,
            agent_socket=None, console_log=self.console_log(vm), accel=accel,
            virt_mode=vm.get("virt_mode"), hotplug_ports=self.network.hotplug_ports(vm),
            uplink_mac=self.network.uplink_mac(vm))

    async def start(self, vm: BaseVM) -> None:
        self._check_can_start(vm)
        done = self._starts[vm.name] = asyncio.get_running_loop().create_future()
        started = False
        try:
            await self._start(vm)
            started = True
        finally:
            done.set_result(started)
            self._starts.pop(vm.name, None)

    async def _start(self, vm: BaseVM) -> None:
        name = vm.name
        self._starting.add(name)
        self.states[name] = "Transient"
        self._halted_event(name).clear()
        vm.fire_event("domain-pre-start")
        volumes_started = domain_created = attached = False
        link: AgentLink | None = None
        attaching: asyncio.Task[None] | None = None
        try:
            await self.network.start_chain(vm)
            await blocking(vm.storage.start)
            volumes_started = True
            self.console_log(vm).parent.mkdir(parents=True, exist_ok=True)
            kernel_files = self._kernel_files(vm)
            accel = (await blocking(choose_accel, kernel_files[0])
                     if kernel_files is not None else "tcg")
            spec = self._domain_spec(vm, accel, kernel_files)
            wired = self.network.netvm_of(vm) is not None
            await blocking(self.engine.start, spec, wired)
            domain_created = True
            if wired:
                await self.network.plug(vm)
                await blocking(self.engine.unpause, name)
                attaching = asyncio.get_running_loop().create_task(self.network.attach(vm))
            link = AgentLink(name, await blocking(self.engine.agent_socket, name))
            await link.connect(30)
            timeout = vm.get("qrexec_timeout")
            try:
                await link.wait_ready(timeout)
            except TimeoutError:
                raise QubesVMError(
                    f"Cannot connect to the agent of {name} within {timeout} seconds "
                    f"(qrexec_timeout). Console log tail:\n"
                    f"{console_tail(self.console_log(vm))}") from None
            self.links[name] = link
            if attaching is not None:
                await attaching
                attached = True
            await self.network.configure(vm)
        except BaseException as exc:
            self.links.pop(name, None)
            if attaching is not None and not attached:
                attaching.cancel()
                await asyncio.gather(attaching, return_exceptions=True)
            if name in self.network.attached:
                await self.network.detach(vm)
            if link is not None:
                await link.close()
            if domain_created:
                with contextlib.suppress(QubesException):
                    await blocking(self.engine.kill, name)
            if volumes_started:
                with contextlib.suppress(QubesException):
                    await blocking(vm.storage.stop)
            self.states.pop(name, None)
            self._starting.discard(name)
            self._halted_event(name).set()
            if isinstance(exc, QubesException) or not isinstance(exc, Exception):
                raise
            raise QubesVMError(f"Failed to start {name}: {exc}") from exc
        self._starting.discard(name)
        self.states[name] = "Running"
        self._serve_calls(vm)
        vm.fire_event("domain-start")
        await self.network.started(vm)

    async def ensure_running(self, vm: BaseVM) -> None:
        """Start ``vm`` unless it runs; when a start is already under way, wait for it
        (two calls that autostart the same qube share one start)."""
        pending = self._starts.get(vm.name)
        if pending is not None:
            if not await asyncio.shield(pending):
                raise QubesVMError(f"{vm.name} failed to start")
        elif self.power_state(vm) == "Halted":
            await self.start(vm)

    async def running_mux(self, vm: BaseVM, autostart: bool) -> CallMux:
        """The call multiplexer of ``vm``, started first when halted and ``autostart``."""
        if not autostart and self.power_state(vm) == "Halted":
            raise QubesVMNotStartedError(f"Domain is not running: {vm.name}")
        await self.ensure_running(vm)
        return self.mux_for(vm)

    def _serve_calls(self, vm: BaseVM) -> None:
        """Make the qube's mux now, so that the calls the qube makes are served."""
        if self.on_mux is not None:
            with contextlib.suppress(QubesException):
                self.mux_for(vm)

    def mux_for(self, vm: BaseVM) -> CallMux:
        """The call multiplexer of a running qube's agent link."""
        link = self.links.get(vm.name)
        if link is None or not link.ready:
            raise QubesVMNotStartedError(f"Domain is not running (or its agent is not ready): "
                                         f"{vm.name}")
        mux = self.muxes.get(vm.name)
        if mux is None or mux.closed or mux.link is not link:
            mux = self.muxes[vm.name] = CallMux(link)
            if self.on_mux is not None:
                self.on_mux(mux)
        return mux

    # ----- stop ---------------------------------------------------------------------

    def _check_running(self, vm: BaseVM) -> None:
        if type(vm).__name__ == "AdminVM":
            raise QubesVMError("dom0 cannot be stopped, paused or killed")
        if self.power_state(vm) not in RUNNING_STATES:
            raise QubesVMNotStartedError(f"Domain is powered off: {vm.name}")

    async def shutdown(self, vm: BaseVM, *, force: bool = False, wait: bool = False,
                       timeout: float | None = None) -> None:
        self._check_running(vm)
        self.network.check_shutdown(vm, force)
        vm.fire_event("domain-pre-shutdown", force=force)
        link = self.links.get(vm.name)
        if link is not None and link.ready:
            link.request_shutdown()
        else:
            await blocking(self.engine.shutdown_acpi, vm.name)
        if self.power_state(vm) == "Running":
            self.states[vm.name] = "Halting"
        if wait:
            limit = timeout if timeout is not None else vm.get("shutdown_timeout")
            try:
                await asyncio.wait_for(self._halted_event(vm.name).wait(), limit)
            except TimeoutError:
                raise QubesVMShutdownTimeout(
                    f"Domain {vm.name} did not shut down within {limit} seconds") from None

    async def kill(self, vm: BaseVM) -> None:
        self._check_running(vm)
        await blocking(self.engine.kill, vm.name)
        await asyncio.wait_for(self._halted_event(vm.name).wait(), 60)

    async def pause(self, vm: BaseVM) -> None:
        if self.power_state(vm) != "Running":
            raise QubesVMNotStartedError(f"Domain is not running: {vm.name}")
        await blocking(self.engine.pause, vm.name)
        self.states[vm.name] = "Paused"
        vm.fire_event("domain-paused")

    async def unpause(self, vm: BaseVM) -> None:
        if self.power_state(vm) != "Paused":
            raise QubesVMError(f"Domain is not paused: {vm.name}")
        await blocking(self.engine.unpause, vm.name)
        self.states[vm.name] = "Running"
        vm.fire_event("domain-unpaused")

    async def stats(self, vm: BaseVM) -> DomainStats | None:
        if self.power_state(vm) not in RUNNING_STATES or vm.name in self._starting:
            return None
        try:
            return await blocking(self.engine.stats, vm.name)
        except QubesVMError:
            return None

    # ----- lifecycle events from the engine -----------------------------------------

    def _on_lifecycle(self, name: str, kind: str) -> None:
        if kind in ("stopped", "crashed") and name not in self._starting \
                and name in self.states:
            asyncio.get_running_loop().create_task(self._domain_stopped(name, kind))

    async def _domain_stopped(self, name: str, kind: str) -> None:
        if self.states.get(name) == "Dying":
            return
        self.states[name] = "Dying"
        link = self.links.pop(name, None)
        mux = self.muxes.pop(name, None)
        if mux is not None:
            await mux.close()
        if link is not None:
            await link.close()
        try:
            vm = self.app.domains[name]
        except KeyError:
            self.states.pop(name, None)
            return
        await self.network.stopped(vm)
        try:
            await blocking(vm.storage.stop)
        except QubesException as exc:
            log.error("%s: stopping its volumes failed: %s", name, exc)
        self.states.pop(name, None)
        vm.fire_event("domain-shutdown", reason=kind)
        if vm.get_or("auto_cleanup", False):
            await self.remove_disposable(vm)
        self._halted_event(name).set()

    async def remove_disposable(self, vm: BaseVM) -> None:
        """A disposable is gone with everything it had once it stops."""
        try:
            self.app.remove_vm(vm)
            await blocking(vm.remove_files)
            if self.save is not None:
                self.save(self.app)
        except QubesException as exc:
            log.error("%s: removing the disposable failed: %s", vm.name, exc)
