"""Where a qube is used: the properties of other qubes and global ones that name it."""

from __future__ import annotations

from .app import Qubes
from .errors import QubesException
from .vm import QubesVM

#: Global properties that may name a qube.
GLOBAL_VM_PROPERTIES = (
    "default_dispvm",
    "default_netvm",
    "default_guivm",
    "default_audiovm",
    "default_template",
    "clockvm",
    "updatevm",
    "management_dispvm",
)
#: Per-qube properties that may name another qube.
VM_PROPERTIES = ("template", "netvm", "guivm", "audiovm", "default_dispvm", "management_dispvm")


def vm_dependencies(app: Qubes, reference: QubesVM) -> list[tuple[QubesVM | None, str]]:
    """(holder, property) pairs naming ``reference``; holder None means a global property."""
    result: list[tuple[QubesVM | None, str]] = []
    global_values = app.props.fetch_all()
    for prop in GLOBAL_VM_PROPERTIES:
        value = global_values.get(prop)
        if value is not None and value.type == "vm" and value.text == reference.name:
            result.append((None, prop))
    for vm in app.domains:
        if vm == reference:
            continue
        try:
            values = vm.props.fetch_all()
        except QubesException:
            continue
        preload = values.get("is_preload")
        is_preload = preload is not None and preload.text == "True"
        for prop in VM_PROPERTIES:
            value = values.get(prop)
            if value is None or value.is_default or value.text != reference.name:
                continue
            if is_preload and prop == "template":
                continue
            result.append((vm, prop))
    return result
