"""Qube lifecycle in the registry: ``admin.vmclass.List``, ``admin.vm.List``, ``Create``,
``CreateInPool``, ``Remove`` and ``CurrentState``."""

from __future__ import annotations

import re

from septa.api.dispatch import Call, method
from septa.core import creation
from septa.core.blocking import blocking
from septa.core.errors import ProtocolError, QubesValueError
from septa.core.labels import Label
from septa.core.vm import VM_CLASSES, AdminVM, BaseVM

_POOL_NAME = re.compile(r"\A[a-zA-Z0-9_.-]{1,64}\Z")
_VOLUMES = ("root", "private", "volatile", "kernel")


@method("admin.vmclass.List", dest_adminvm=True)
async def vmclass_list(call: Call) -> str:
    return "".join(f"{name}\n" for name in sorted(VM_CLASSES))


def vm_line(vm: BaseVM) -> str:
    return f"{vm.name} class={type(vm).__name__} state={vm.power_state()} uuid={vm.uuid}\n"


@method("admin.vm.List")
async def vm_list(call: Call) -> str:
    if isinstance(call.dest, AdminVM):
        return "".join(vm_line(vm) for vm in call.app.domains if call.may_see(vm))
    return vm_line(call.dest)


def _parse_create_payload(call: Call, in_pool: bool,
                          ) -> tuple[str, Label, dict[str, str], str | None]:
    fields: dict[str, str] = {}
    pools: dict[str, str] = {}
    for item in call.text_payload().split(" "):
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise ProtocolError(f"Invalid create parameter {item!r}: expected key=value")
        if key.startswith("pool:") and in_pool:
            if key[5:] not in _VOLUMES:
                raise QubesValueError(f"Unknown volume {key[5:]!r}")
            pools[key[5:]] = value
        elif key in ("name", "label") or (key == "pool" and in_pool):
            if key in fields:
                raise ProtocolError(f"Parameter {key} given twice")
            fields[key] = value
        else:
            raise ProtocolError(f"Unknown create parameter {key!r}")
    if "name" not in fields or "label" not in fields:
        raise ProtocolError("Create needs name= and label=")
    if "pool" in fields and pools:
        raise ProtocolError("Use either pool= or pool:<volume>=, not both")
    for pool in [*pools.values(), *([fields["pool"]] if "pool" in fields else [])]:
        if not _POOL_NAME.match(pool):
            raise QubesValueError(f"Invalid pool name {pool!r}")
    return fields["name"], call.app.labels[fields["label"]], pools, fields.get("pool")


async def create_qube(call: Call, klass: str, name: str, label: Label,
                      template: BaseVM | str | None, properties: dict[str, str] | None = None,
                      pools: dict[str, str] | None = None, pool: str | None = None) -> BaseVM:
    """A new qube made for the caller (see :func:`septa.core.creation.create_qube`)."""
    return await creation.create_qube(call.app, klass, name, label, template,
                                      created_by=call.source, properties=properties,
                                      pools=pools, pool=pool)


async def _create(call: Call, in_pool: bool) -> str:
    name, label, pools, pool = _parse_create_payload(call, in_pool)
    await create_qube(call, call.suffix, name, label, call.arg or None, pools=pools, pool=pool)
    return ""


@method("admin.vm.Create.", prefix=True, wants_arg=None, wants_payload=True,
        dest_adminvm=True, writes=True)
async def vm_create(call: Call) -> str:
    return await _create(call, in_pool=False)


@method("admin.vm.CreateInPool.", prefix=True, wants_arg=None, wants_payload=True,
        dest_adminvm=True, writes=True)
async def vm_create_in_pool(call: Call) -> str:
    return await _create(call, in_pool=True)


@method("admin.vm.Remove", dest_adminvm=False, writes=True)
async def vm_remove(call: Call) -> str:
    vm = call.dest
    call.app.remove_vm(vm)
    await blocking(vm.remove_files)
    return ""
