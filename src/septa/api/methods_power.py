"""``admin.vm.Start/Shutdown/Kill/Pause/Unpause``, ``CurrentState`` and ``Stats``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from septa.api.dispatch import Call, method
from septa.api.protocol import event_frame
from septa.core.blocking import blocking
from septa.core.errors import ProtocolError, QubesVMError, QubesVMNotRunningError
from septa.core.lifecycle import Runtime


def _runtime(call: Call) -> Runtime:
    runtime = call.app.runtime
    if runtime is None:
        raise QubesVMError("This septad runs without a hypervisor: qubes cannot run")
    return runtime


@method("admin.vm.Start", dest_adminvm=False)
async def vm_start(call: Call) -> str:
    await _runtime(call).start(call.dest)
    return ""


@method("admin.vm.Shutdown", wants_arg=None, dest_adminvm=False)
async def vm_shutdown(call: Call) -> str:
    flags = set(call.arg.split("+")) if call.arg else set()
    if not flags <= {"force", "wait"}:
        raise ProtocolError(f"Invalid shutdown argument {call.arg!r}")
    await _runtime(call).shutdown(call.dest, force="force" in flags, wait="wait" in flags)
    return ""


@method("admin.vm.Kill", dest_adminvm=False)
async def vm_kill(call: Call) -> str:
    await _runtime(call).kill(call.dest)
    return ""


@method("admin.vm.Pause", dest_adminvm=False)
async def vm_pause(call: Call) -> str:
    await _runtime(call).pause(call.dest)
    return ""


@method("admin.vm.Unpause", dest_adminvm=False)
async def vm_unpause(call: Call) -> str:
    await _runtime(call).unpause(call.dest)
    return ""


@method("admin.vm.CurrentState")
async def vm_current_state(call: Call) -> str:
    state = call.dest.power_state()
    stats = await call.app.runtime.stats(call.dest) if call.app.runtime is not None else None
    if stats is None:
        return f"mem=0 mem_static_max=0 cputime=0 power_state={state}"
    return (f"mem={stats.memory_kb} mem_static_max={stats.maxmem_kb} "
            f"cputime={stats.cputime_ns} power_state={state}")


@method("admin.vm.Stats")
async def vm_stats(call: Call) -> AsyncIterator[bytes]:
    """``vm-stats`` events every ``stats_interval`` seconds for running qubes."""
    only = None if call.dest.name == "dom0" else call.dest

    async def stream() -> AsyncIterator[bytes]:
        yield event_frame("", "connection-established", {})
        while True:
            for vm in ([only] if only is not None else list(call.app.domains)):
                if vm.name == "dom0" or call.app.runtime is None:
                    continue
                stats = await call.app.runtime.stats(vm)
                if stats is None:
                    continue
                yield event_frame(vm.name, "vm-stats", {
                    "memory_kb": str(stats.memory_kb),
                    "cpu_time": str(stats.cputime_ns // 1_000_000),
                    "cpu_usage": "0", "cpu_usage_raw": "0"})
            await asyncio.sleep(call.app.get("stats_interval"))

    return stream()


@method("admin.vm.Console", dest_adminvm=False)
async def vm_console(call: Call) -> str:
    """The host tty of the running qube's console (dom0 tools attach to it)."""
    runtime = _runtime(call)
    if call.dest.power_state() not in ("Running", "Paused"):
        raise QubesVMNotRunningError(f"Domain is not running: {call.dest.name}")
    return await blocking(runtime.engine.console_pty, call.dest.name)
