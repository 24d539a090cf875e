"""septad's relay of the calls qubes make (``qrexec-client-vm``), under the qrexec policy.

A qube's agent sends CALL (see :mod:`septa.agent.wire`); the qube's
:class:`~septa.qrexec.mux.CallMux` hands it over as an
:class:`~septa.qrexec.incoming.IncomingCall`, whose source is the qube at the other end
of the link (never what the qube says). :class:`QrexecRelay` then:

1. evaluates the policy (:class:`~septa.qrexec.policy.PolicyCache`, re-read when its
   files change) with the registry's facts; no matching rule denies. ``ask`` goes to
   the user (:attr:`QrexecRelay.confirm`, the prompt of a policy agent): the chosen
   target, or deny; without a way to ask, ``ask`` denies;
2. on ``allow``, runs the service in the target: a qube (started first when it is
   halted, which the rule's ``autostart`` allows) gets an OPEN with the calling qube as
   ``source`` and the rule's user; ``@dispvm:NAME`` is a new disposable of NAME (a
   preloaded one when there is one), destroyed when the call ends; dom0 serves
   ``admin.*`` calls on its Admin API (:mod:`septa.api.qrexec_admin`) and runs other
   services from the executable files of its ``/etc/qubes-rpc``
   (:mod:`septa.api.qrexec_dom0`);
3. relays stdin, stdout and stderr both ways (flow control end to end) and ends the
   caller's call with the exit status, or with ERROR (``refused`` when the service
   never ran; the caller learns no reason, which stays in septad's log, as in Qubes).
   A refused call never reaches its target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from septa.api.qrexec_admin import AdminBridge
from septa.api.qrexec_dom0 import run_dom0_service
from septa.core.errors import QubesException, QubesVMNotStartedError
from septa.qrexec.incoming import IncomingCall
from septa.qrexec.mux import CallMux, CallRefused, QrexecError, pump
from septa.qrexec.policy import Allow, Ask, Decision, Deny, PolicyCache, Request, SystemInfo
from septa.qrexec.policy.errors import RequestError

if TYPE_CHECKING:
    from pathlib import Path

    from septa.core.app import Qubes
    from septa.core.lifecycle import Runtime

log = logging.getLogger(__name__)
DEFAULT_USER = "user"


DISPVM_PREFIX = "@dispvm:"
#: How the relay asks the user about an ``ask`` decision: (decision, source, service,
#: argument) -> what the user chose
Confirm = Callable[[Ask, str, str, str], Awaitable[Allow | Deny]]


class Targets(Protocol):
    """Where calls run: the call multiplexer of a running qube; new disposables."""

    async def mux_for(self, name: str, autostart: bool) -> CallMux:
        """The mux of qube ``name``, started first if halted and ``autostart``."""
        ...

    async def new_disposable(self, template: str, source: str) -> str:
        """The name of a new disposable of ``template`` for a call from ``source``."""
        ...

    async def discard(self, name: str) -> None:
        """Destroy the disposable ``name`` (its call has ended)."""
        ...


class RuntimeTargets:
    """:class:`Targets` of septad's registry and runtime."""

    def __init__(self, app: Qubes) -> None:
        self.app = app

    def _runtime(self) -> Runtime:
        if self.app.runtime is None:
            raise QubesVMNotStartedError("This septad runs no qubes")
        return self.app.runtime

    async def mux_for(self, name: str, autostart: bool) -> CallMux:
        return await self._runtime().running_mux(self.app.domains[name], autostart)

    async def new_disposable(self, template: str, source: str) -> str:
        vm = await self._runtime().disposables.new(self.app.domains[template], source)
        return vm.name

    async def discard(self, name: str) -> None:
        if name not in self.app.domains:
            return
        vm, runtime = self.app.domains[name], self._runtime()
        if runtime.power_state(vm) != "Halted":
            await runtime.kill(vm)  # septad removes it as it stops (auto_cleanup)
        else:
            await runtime.remove_disposable(vm)


def registry_info(app: Qubes) -> SystemInfo:
    """The policy's view of the registry (the facts of ``internal.GetSystemInfo``)."""
    from septa.api.methods_internal import system_facts

    return SystemInfo.from_json(system_facts(app))


class QrexecRelay:
    """Decides and relays the calls of qubes. :meth:`attach` it to each qube's mux."""

    def __init__(
        self,
        system_info: Callable[[], SystemInfo],
        targets: Targets,
        policy: PolicyCache | None = None,
        rpc_dir: Path | None = None,
    ) -> None:
        self.system_info = system_info
        self.targets = targets
        self.policy = policy if policy is not None else PolicyCache()
        #: dom0's services; None: dom0 serves no calls from qubes
        self.rpc_dir = rpc_dir
        #: asks the user about ``ask`` decisions; None: ``ask`` denies
        self.confirm: Confirm | None = None
        #: serves ``admin.*`` calls to dom0; None: dom0 serves them from ``rpc_dir``
        self.admin: AdminBridge | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def for_app(cls, app: Qubes) -> QrexecRelay:
        """The relay of septad: its registry, runtime, policy and dom0 services."""
        return cls(lambda: registry_info(app), RuntimeTargets(app),
                   rpc_dir=app.paths.rpc_dir)

    def attach(self, mux: CallMux) -> None:
        """Serve the calls the qube of ``mux`` makes."""
        mux.on_incoming = self._accept

    def _accept(self, call: IncomingCall) -> None:
        task = asyncio.get_running_loop().create_task(self.handle(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Abort the calls being relayed."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def decide(self, source: str, target: str, service: str, arg: str) -> Decision:
        """The decision for a call from ``source``, the user asked when the policy says so."""
        try:
            request = Request(source, target, service, arg)
        except RequestError as exc:
            return Deny(str(exc))
        try:
            info = self.system_info()
        except (QubesException, ValueError) as exc:
            return Deny(f"no system info: {exc}")
        decision = self.policy.evaluate(request, info)
        if isinstance(decision, Ask):
            if self.confirm is None:
                return Deny(f"nobody to ask (no policy agent): {decision.rule}",
                            rule=decision.rule)
            return await self.confirm(decision, source, service, arg)
        return decision

    async def handle(self, call: IncomingCall) -> None:
        """Decide, run and relay one call; always ends it."""
        source, info = call.source, call.info
        what = f"{source} -> {info.target}: {info.service}+{info.arg}"
        decision = await self.decide(source, info.target, info.service, info.arg)
        if isinstance(decision, Deny):
            log.info("refused %s: %s", what, decision.reason)
            call.refuse("Request refused")  # the reason stays in dom0, as in Qubes
            return
        assert isinstance(decision, Allow)
        log.info("allowed %s in %s (%s)", what, decision.target, decision.rule)
        work = asyncio.ensure_future(self._run(call, decision))
        ended = asyncio.ensure_future(call.wait_ended())
        try:
            await asyncio.wait({work, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, ended):
                if not task.done():
                    task.cancel()
            results = await asyncio.gather(work, ended, return_exceptions=True)
        error = results[0]
        if isinstance(error, BaseException) and not isinstance(error, asyncio.CancelledError):
            log.warning("call %s failed: %s", what, error)
            call.refuse(f"the call failed: {error}", refused=False)

    async def _run(self, call: IncomingCall, decision: Allow) -> None:
        if decision.target == self.system_info().adminvm:
            await self._run_in_dom0(call, decision)
        elif decision.target.startswith(DISPVM_PREFIX):
            await self._run_in_disposable(call, decision)
        else:
            await self._run_in_qube(call, decision, decision.target, decision.autostart)

    async def _run_in_dom0(self, call: IncomingCall, decision: Allow) -> None:
        if self.admin is not None and self.admin.serves(call.info.service):
            call.exit(await self.admin.serve(call, decision.requested_target))
        elif self.rpc_dir is None:
            call.refuse("dom0 serves no calls from qubes here")
        else:
            call.exit(await run_dom0_service(call, self.rpc_dir, decision.requested_target))

    async def _run_in_disposable(self, call: IncomingCall, decision: Allow) -> None:
        template = decision.target[len(DISPVM_PREFIX):]
        try:
            name = await self.targets.new_disposable(template, call.source)
        except (QubesException, KeyError) as exc:
            log.warning("call %s from %s: no disposable of %s: %s", call.info.service,
                        call.source, template, exc)
            call.refuse("Request refused")
            return
        log.info("call %s from %s runs in the new disposable %s", call.info.service,
                 call.source, name)
        try:
            await self._run_in_qube(call, decision, name, autostart=True)
        finally:
            with contextlib.suppress(QubesException):
                await asyncio.shield(self.targets.discard(name))

    async def _run_in_qube(self, call: IncomingCall, decision: Allow, target: str,
                           autostart: bool) -> None:
        info = call.info
        try:
            mux = await self.targets.mux_for(target, autostart)
            remote = await mux.open({
                "service": info.service, "arg": info.arg, "source": call.source,
                "user": decision.user or DEFAULT_USER,
                "requested_target": decision.requested_target,
            })
            status = await pump(remote, call.stdin, call.stdout, call.stderr)
        except (QubesException, KeyError) as exc:
            log.warning("call %s+%s from %s: cannot reach %s: %s", info.service, info.arg,
                        call.source, target, exc)
            call.refuse("Request refused")
            return
        except CallRefused as exc:
            call.refuse(str(exc), refused=not (call.stdout.sent or call.stderr.sent))
            return
        except (QrexecError, BrokenPipeError) as exc:
            call.refuse(f"the call failed: {exc}", refused=False)
            return
        call.exit(status)
