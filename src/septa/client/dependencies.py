"""Where a qube is used: the properties of other qubes and global ones that name it."""

from __future__ import annotations

from .app import Qubes
from .bulk import fetch_all_properties
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
    app.props.load_all()
    for prop in GLOBAL_VM_PROPERTIES:
        value = app.props.cached(prop)
        if value is not None and value.type == "vm" and value.text == reference.name:
            result.append((None, prop))
    others = [vm for vm in app.domains if vm != reference]
    fetch_all_properties(others)
    for vm in others:
        if not vm.props.is_cached:
            continue  # could not be read (e.g. removed meanwhile)
        preload = vm.props.cached("is_preload")
        is_preload = preload is not None and preload.text == "True"
        for prop in VM_PROPERTIES:
            value = vm.props.cached(prop)
            if value is None or value.is_default or value.text != reference.name:
                continue
            if is_preload and prop == "template":
                continue
            result.append((vm, prop))
    return result
