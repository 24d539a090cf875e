"""``internal.*`` methods on the internal socket: facts other dom0 services need."""

from __future__ import annotations

import json

from septa.api.dispatch import Call, MethodTable, method
from septa.core.app import Qubes
from septa.core.blocking import blocking
from septa.core.errors import (
    QubesException,
    QubesValueError,
    QubesVMNotHaltedError,
    StoragePoolException,
)
from septa.core.vm import BaseVM
from septa.storage import Volume
from septa.storage.kernel import KernelPool

INTERNAL = MethodTable()


def _info(vm: BaseVM) -> dict[str, object]:
    default_dispvm = vm.get_or("default_dispvm", None)
    return {
        "tags": list(vm.tags),
        "type": type(vm).__name__,
        "template_for_dispvms": vm.get_or("template_for_dispvms", False),
        "default_dispvm": default_dispvm.name if default_dispvm is not None else None,
        "icon": vm.icon_name(),
        "guivm": None,
        "power_state": vm.power_state(),
        "uuid": vm.uuid,
    }


def system_facts(app: Qubes) -> dict[str, object]:
    """The registry facts the qrexec policy needs (``internal.GetSystemInfo``)."""
    return {"domains": {vm.name: _info(vm) for vm in app.domains}}


@method("internal.GetSystemInfo", dest_adminvm=True, table=INTERNAL)
async def system_info(call: Call) -> str:
    return json.dumps(system_facts(call.app))


def _import_volume(call: Call) -> Volume:
    if call.dest.power_state() != "Halted":
        raise QubesVMNotHaltedError(f"Cannot import into a volume of running qube {call.dest.name}")
    if call.arg not in call.dest.storage.configs:
        raise StoragePoolException(f"{call.dest.name} has no volume {call.arg!r}")
    return call.dest.storage[call.arg]


@method("internal.vm.volume.ImportBegin", wants_arg=True, wants_payload=True, table=INTERNAL)
async def import_begin(call: Call) -> str:
    volume = _import_volume(call)
    text = call.text_payload().strip()
    if text and not text.isdigit():
        raise QubesValueError(f"Invalid size: {text!r}")
    size = int(text) if text else volume.size
    if size > volume.size:
        await blocking(volume.resize, size)
    return await blocking(volume.import_data, size)


@method("internal.vm.volume.ImportEnd", wants_arg=True, wants_payload=True, table=INTERNAL,
        writes=True)
async def import_end(call: Call) -> str:
    volume = _import_volume(call)
    status, _, message = call.text_payload().partition("\n")
    await blocking(volume.import_data_end, status == "ok")
    if status != "ok":
        raise QubesException(f"Data import into {call.dest.name}:{call.arg} failed: {message}")
    call.dest.fire_event("domain-volume-import-end", volume=call.arg, success=True)
    return ""


@method("internal.kernel.Install", wants_arg=True, wants_payload=True, dest_adminvm=True,
        table=INTERNAL, writes=True)
async def kernel_install(call: Call) -> str:
    """Install a kernel (payload: the paths of vmlinuz and initrd, one a line)."""
    files = call.text_payload().splitlines()
    if len(files) != 2:
        raise QubesValueError("Payload must be the paths of vmlinuz and initrd")
    pool = call.app.pools.get(call.app.get("default_pool_kernel"))
    if not isinstance(pool, KernelPool):
        raise StoragePoolException("No kernel pool")
    await blocking(lambda: pool.add_kernel(call.arg, files[0], files[1], replace=True))
    return ""
