"""``admin.vm.firewall.Get/Set/Reload``: the rules of a qube, enforced by its netvm (a
change returns once the netvm enforces it)."""

from __future__ import annotations

from pathlib import Path

from septa.api.dispatch import Call, method
from septa.api.methods_properties import settle_network
from septa.core.firewall import FIREWALL_FILE, load_rules, parse_rules, save_rules


def _path(call: Call) -> Path:
    return call.dest.dir_path / FIREWALL_FILE


@method("admin.vm.firewall.Get", dest_adminvm=False)
async def firewall_get(call: Call) -> str:
    return "".join(f"{rule}\n" for rule in load_rules(_path(call)))


@method("admin.vm.firewall.Set", dest_adminvm=False, wants_payload=True)
async def firewall_set(call: Call) -> str:
    rules = parse_rules(call.text_payload())
    save_rules(_path(call), rules)
    call.dest.fire_event("firewall-changed")
    await settle_network(call)
    return ""


@method("admin.vm.firewall.Reload", dest_adminvm=False)
async def firewall_reload(call: Call) -> str:
    load_rules(_path(call))
    call.dest.fire_event("firewall-changed")
    await settle_network(call)
    return ""
