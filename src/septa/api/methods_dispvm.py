"""``admin.vm.CreateDisposable``: a new disposable qube from a disposable template.

Called on a disposable template it uses that one; called on dom0 (or on another qube)
it uses the caller's ``default_dispvm``. The disposable is named ``disp<dispid>``,
takes its template's label, and has ``auto_cleanup``: it is removed, volumes and all,
when it stops. When the template has preloaded disposables (``preload-dispvm-max``),
the answer is one of them, already running (:mod:`septa.core.disposables`).
"""

from __future__ import annotations

from septa.api.dispatch import Call, method
from septa.core.disposables import disposable_template
from septa.core.errors import QubesVMError


@method("admin.vm.CreateDisposable", wants_arg=None, wants_payload=False, writes=True)
async def create_disposable(call: Call) -> str:
    source = call.app.domains[call.source] if call.source in call.app.domains else None
    template = disposable_template(source, call.dest)
    runtime = call.app.runtime
    if runtime is None:
        raise QubesVMError("This septad runs without a hypervisor: no disposables")
    vm = await runtime.disposables.new(template, call.source)
    return vm.name
