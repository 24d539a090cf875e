"""``admin.vm.CreateDisposable``: a new disposable qube from a disposable template.

Called on a disposable template it uses that one; called on dom0 (or on another qube)
it uses the caller's ``default_dispvm``. The disposable is named ``disp<dispid>``,
takes its template's label, and has ``auto_cleanup``: it is removed, volumes and all,
when it stops.
"""

from __future__ import annotations

from septa.api.dispatch import Call, method
from septa.api.methods_vm import create_qube
from septa.core.errors import QubesException
from septa.core.vm import AdminVM


@method("admin.vm.CreateDisposable", wants_arg=None, wants_payload=False, writes=True)
async def create_disposable(call: Call) -> str:
    if isinstance(call.dest, AdminVM) or not call.dest.get_or("template_for_dispvms", False):
        source = call.app.domains[call.source] if call.source in call.app.domains else call.dest
        template = source.get_or("default_dispvm", None)
        if template is None:
            raise QubesException(f"No default disposable template for {source.name}")
    else:
        template = call.dest
    name = f"disp{call.app.domains.free_dispid()}"
    vm = await create_qube(call, "DispVM", name, template.get("label"), template,
                           properties={"auto_cleanup": "True"})
    return vm.name
