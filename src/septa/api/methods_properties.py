"""``admin.property.*`` (global) and ``admin.vm.property.*`` (per qube) methods."""

from __future__ import annotations

from septa.api.dispatch import Call, method
from septa.core.errors import QubesNoSuchPropertyError
from septa.core.properties import PropertyHolder, serialize


def _holder(call: Call, global_: bool) -> PropertyHolder:
    return call.app if global_ else call.dest


def _known(holder: PropertyHolder, name: str) -> str:
    if name not in holder.property_defs:
        raise QubesNoSuchPropertyError(holder, name)
    return name


def describe(holder: PropertyHolder, name: str) -> str:
    """``default=<bool> type=<type> <value>`` as Qubes answers property.Get."""
    wire_type = holder.property_defs[name].type
    try:
        value = holder.get(name)
    except AttributeError:
        return f"default=True type={wire_type} "
    return f"default={holder.property_is_default(name)} type={wire_type} {serialize(value)}"


def _list(holder: PropertyHolder) -> str:
    return "".join(f"{name}\n" for name in holder.property_list())


def _get_all(holder: PropertyHolder) -> str:
    return "".join(
        "{} {}\n".format(name, describe(holder, name).replace("\\", "\\\\").replace("\n", "\\n"))
        for name in holder.property_list()
    )


def _get_default(holder: PropertyHolder, name: str) -> str:
    _known(holder, name)
    try:
        value = holder.get_default(name)
    except AttributeError:
        return ""
    return f"type={holder.property_defs[name].type} {serialize(value)}"


def _set(holder: PropertyHolder, name: str, call: Call) -> str:
    _known(holder, name)
    holder.set_text(name, call.text_payload())
    return ""


def _reset(holder: PropertyHolder, name: str) -> str:
    _known(holder, name)
    holder.reset(name)
    return ""


async def settle_network(call: Call) -> None:
    """Return once running qubes follow the change (a new netvm is wired in)."""
    if call.app.runtime is not None:
        await call.app.runtime.network.settle()


def _help(holder: PropertyHolder, name: str) -> str:
    return holder.property_def(name).doc


def _register(prefix: str, global_: bool) -> None:
    dest = True if global_ else None

    @method(f"{prefix}.List", dest_adminvm=dest)
    async def list_(call: Call) -> str:
        return _list(_holder(call, global_))

    @method(f"{prefix}.GetAll", dest_adminvm=dest)
    async def get_all(call: Call) -> str:
        return _get_all(_holder(call, global_))

    @method(f"{prefix}.Get", wants_arg=True, dest_adminvm=dest)
    async def get(call: Call) -> str:
        holder = _holder(call, global_)
        return describe(holder, _known(holder, call.arg))

    @method(f"{prefix}.GetDefault", wants_arg=True, dest_adminvm=dest)
    async def get_default(call: Call) -> str:
        return _get_default(_holder(call, global_), call.arg)

    @method(f"{prefix}.Help", wants_arg=True, dest_adminvm=dest)
    async def help_(call: Call) -> str:
        return _help(_holder(call, global_), call.arg)

    @method(f"{prefix}.Set", wants_arg=True, wants_payload=True, dest_adminvm=dest,
            writes=True)
    async def set_(call: Call) -> str:
        _set(_holder(call, global_), call.arg, call)
        await settle_network(call)
        return ""

    @method(f"{prefix}.Reset", wants_arg=True, dest_adminvm=dest, writes=True)
    async def reset(call: Call) -> str:
        _reset(_holder(call, global_), call.arg)
        await settle_network(call)
        return ""


_register("admin.property", True)
_register("admin.vm.property", False)
