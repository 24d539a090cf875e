"""``admin.label.*``: list, look up, create and remove labels."""

from __future__ import annotations

from septa.api.dispatch import Call, method
from septa.core.errors import QubesException


@method("admin.label.List", dest_adminvm=True)
async def label_list(call: Call) -> str:
    return "".join(f"{label.name}\n" for label in call.app.labels)


@method("admin.label.Get", wants_arg=True, dest_adminvm=True)
async def label_get(call: Call) -> str:
    return call.app.labels[call.arg].color


@method("admin.label.Index", wants_arg=True, dest_adminvm=True)
async def label_index(call: Call) -> str:
    return str(call.app.labels[call.arg].index)


@method("admin.label.Create", wants_arg=True, wants_payload=True, dest_adminvm=True,
        writes=True)
async def label_create(call: Call) -> str:
    call.app.labels.create(call.arg, call.text_payload().strip())
    return ""


@method("admin.label.Remove", wants_arg=True, dest_adminvm=True, writes=True)
async def label_remove(call: Call) -> str:
    label = call.app.labels[call.arg]
    users = [vm.name for vm in call.app.domains if vm.get_or("label", None) is label]
    if users:
        raise QubesException(f"Label {label.name} is still used by: {', '.join(users)}")
    call.app.labels.remove(call.arg)
    return ""
