"""Making a new qube whole: its registry entry and its volumes, or nothing at all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from septa.core.blocking import blocking

if TYPE_CHECKING:
    from septa.core.app import Qubes
    from septa.core.labels import Label
    from septa.core.vm import BaseVM


async def create_qube(app: Qubes, klass: str, name: str, label: Label | str,
                      template: BaseVM | str | None, *, created_by: str,
                      properties: dict[str, str] | None = None,
                      pools: dict[str, str] | None = None, pool: str | None = None) -> BaseVM:
    """A new qube with its volumes made, tagged ``created-by-<created_by>``; on any
    failure nothing of it is left."""
    vm = app.create_vm(klass, name, label, template=template, properties=properties)
    try:
        if pools or pool:
            vm.storage.plan(pools, pool)
        await blocking(vm.storage.create)
    except BaseException:
        app.forget_vm(vm)
        raise
    vm.tags.add(f"created-by-{created_by}")
    return vm
