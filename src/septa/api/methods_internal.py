"""``internal.*`` methods on the internal socket: facts other dom0 services need."""

from __future__ import annotations

import json

from septa.api.dispatch import Call, MethodTable, method
from septa.core.vm import BaseVM

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


@method("internal.GetSystemInfo", dest_adminvm=True, table=INTERNAL)
async def system_info(call: Call) -> str:
    return json.dumps({"domains": {vm.name: _info(vm) for vm in call.app.domains}})
