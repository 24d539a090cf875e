"""Methods of capabilities that later parts of Septa bring (running qubes, storage,
devices). Each answers a clear ``QubesNotImplementedError`` frame
naming what is missing, instead of failing the connection, until its part lands.
Where an empty answer is the truth today (no device classes), it is given.
"""

from __future__ import annotations

from septa.api.dispatch import Call, method
from septa.core.errors import QubesNotImplementedError

_LATER: dict[str, tuple[str, ...]] = {}


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


@method("admin.deviceclass.List", dest_adminvm=True)
async def deviceclass_list(call: Call) -> str:
    return ""
