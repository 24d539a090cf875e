"""Methods of capabilities that later parts of Septa bring (running qubes, storage,
devices, backup, disposables). Each answers a clear ``QubesNotImplementedError`` frame
naming what is missing, instead of failing the connection, until its part lands.
Where an empty answer is the truth today (no volumes, no device classes), it is given.
"""

from __future__ import annotations

from septa.api.dispatch import Call, method
from septa.core.errors import QubesNotImplementedError

_LATER = {
    "running qubes (the engine)": (
        "admin.vm.Start", "admin.vm.Shutdown", "admin.vm.Pause", "admin.vm.Unpause",
        "admin.vm.Kill", "admin.vm.Stats", "admin.vm.Console",
    ),
    "storage": (
        "admin.vm.volume.Info", "admin.vm.volume.ListSnapshots", "admin.vm.volume.Revert",
        "admin.vm.volume.Resize", "admin.vm.volume.Clear", "admin.vm.volume.CloneFrom",
        "admin.vm.volume.CloneTo", "admin.vm.volume.Set.revisions_to_keep",
        "admin.vm.volume.Set.rw", "admin.vm.volume.Set.ephemeral", "admin.pool.List",
        "admin.pool.ListDrivers", "admin.pool.Info", "admin.pool.UsageDetails", "admin.pool.Add",
        "admin.pool.Remove", "admin.pool.Set.revisions_to_keep",
        "admin.pool.Set.ephemeral_volatile", "admin.pool.volume.List",
    ),
    "disposable qubes": ("admin.vm.CreateDisposable",),
    "backup": ("admin.backup.Execute", "admin.backup.Cancel", "admin.backup.Info"),
}


def _refuse(method_name: str, what: str, prefix: bool = False) -> None:
    @method(method_name, wants_arg=None, wants_payload=True, prefix=prefix)
    async def refuse(call: Call) -> str:
        raise QubesNotImplementedError(
            f"{call.request.method} is not available yet: {what} is not implemented in this "
            "version of Septa"
        )


for _what, _names in _LATER.items():
    for _name in _names:
        _refuse(_name, _what)
_refuse("admin.vm.device.", "device assignment", prefix=True)


@method("admin.vm.volume.List")
async def volume_list(call: Call) -> str:
    return ""


@method("admin.deviceclass.List", dest_adminvm=True)
async def deviceclass_list(call: Call) -> str:
    return ""
