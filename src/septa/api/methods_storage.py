"""``admin.vm.volume.*`` and ``admin.pool.*``: the volumes of qubes and the pools that hold
them. Storage work runs in the executor; the registry is saved when a setting changes."""

from __future__ import annotations

import secrets

from septa.api.dispatch import Call, method
from septa.core.blocking import blocking
from septa.core.errors import (
    QubesException,
    QubesValueError,
    QubesVMNotHaltedError,
    StoragePoolException,
)
from septa.core.properties import parse_bool
from septa.storage import Volume, create_pool, driver_names, driver_parameters

_CLONE_TOKENS: dict[str, Volume] = {}
MAX_CLONE_TOKENS = 256


def _volume(call: Call) -> Volume:
    if call.arg not in call.dest.storage.configs:
        raise StoragePoolException(f"{call.dest.name} has no volume {call.arg!r}")
    return call.dest.storage[call.arg]


def _halted(call: Call, action: str) -> None:
    if call.dest.power_state() != "Halted":
        raise QubesVMNotHaltedError(f"Cannot {action} a volume of running qube {call.dest.name}")


def _key_values(pairs: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in pairs.items())


def _int_payload(call: Call, what: str) -> int:
    text = call.text_payload().strip()
    if not text.isdigit():
        raise QubesValueError(f"Invalid {what}: {text!r}")
    return int(text)


def _save_config(call: Call, volume: Volume) -> None:
    call.dest.storage.configs[call.arg] = volume.config.copy(
        pool=call.dest.storage.configs[call.arg].pool)
    call.dest.fire_event("domain-volume-config", volume=call.arg)


@method("admin.vm.volume.List")
async def volume_list(call: Call) -> str:
    return "".join(f"{name}\n" for name in call.dest.storage.volumes)


@method("admin.vm.volume.Info", wants_arg=True)
async def volume_info(call: Call) -> str:
    volume = _volume(call)
    return _key_values(await blocking(volume.info))


@method("admin.vm.volume.ListSnapshots", wants_arg=True)
async def volume_list_snapshots(call: Call) -> str:
    revisions = await blocking(_volume(call).revisions)
    return "".join(f"{revision}\n" for revision in revisions)


@method("admin.vm.volume.Revert", wants_arg=True, wants_payload=True, writes=True)
async def volume_revert(call: Call) -> str:
    _halted(call, "revert")
    volume = _volume(call)
    revision = call.text_payload().strip() or None
    await blocking(volume.revert, revision)
    return ""


@method("admin.vm.volume.Resize", wants_arg=True, wants_payload=True, writes=True)
async def volume_resize(call: Call) -> str:
    volume = _volume(call)
    await blocking(volume.resize, _int_payload(call, "size"))
    _save_config(call, volume)
    return ""


@method("admin.vm.volume.Clear", wants_arg=True, writes=True)
async def volume_clear(call: Call) -> str:
    _halted(call, "clear")
    volume = _volume(call)

    def clear() -> None:
        volume.import_data(volume.size)
        volume.import_data_end(True)

    await blocking(clear)
    return ""


@method("admin.vm.volume.Set.revisions_to_keep", wants_arg=True, wants_payload=True,
        writes=True)
async def volume_set_revisions(call: Call) -> str:
    volume = _volume(call)
    text = call.text_payload().strip()
    if not text.lstrip("-").isdigit():
        raise QubesValueError(f"Invalid revisions_to_keep: {text!r}")
    volume.revisions_to_keep = int(text)
    _save_config(call, volume)
    return ""


def _bool_setting(name: str) -> None:
    @method(f"admin.vm.volume.Set.{name}", wants_arg=True, wants_payload=True, writes=True)
    async def set_flag(call: Call) -> str:
        _halted(call, "change")
        volume = _volume(call)
        setattr(volume, name, parse_bool(call.text_payload()))
        _save_config(call, volume)
        return ""


_bool_setting("rw")
_bool_setting("ephemeral")


@method("admin.vm.volume.CloneFrom", wants_arg=True)
async def volume_clone_from(call: Call) -> str:
    volume = _volume(call)
    while len(_CLONE_TOKENS) >= MAX_CLONE_TOKENS:
        _CLONE_TOKENS.pop(next(iter(_CLONE_TOKENS)))
    token = secrets.token_hex(32)
    _CLONE_TOKENS[token] = volume
    return token


@method("admin.vm.volume.CloneTo", wants_arg=True, wants_payload=True, writes=True)
async def volume_clone_to(call: Call) -> str:
    _halted(call, "clone into")
    source = _CLONE_TOKENS.pop(call.text_payload().strip(), None)
    if source is None:
        raise QubesValueError("Invalid or used clone token")
    volume = _volume(call)
    await blocking(volume.import_volume, source)
    return ""


# ----- pools -----------------------------------------------------------------------


def _pool_name(call: Call) -> str:
    if call.arg not in call.app.pools:
        raise StoragePoolException(f"No such pool: {call.arg!r}")
    return call.arg


@method("admin.pool.List", dest_adminvm=True)
async def pool_list(call: Call) -> str:
    return "".join(f"{name}\n" for name in sorted(call.app.pools))


@method("admin.pool.ListDrivers", dest_adminvm=True)
async def pool_list_drivers(call: Call) -> str:
    return "".join(f"{' '.join([name, *driver_parameters(name)])}\n"
                   for name in sorted(driver_names()))


@method("admin.pool.Info", wants_arg=True, dest_adminvm=True)
async def pool_info(call: Call) -> str:
    pool = call.app.pools[_pool_name(call)]
    return _key_values(await blocking(pool.info))


@method("admin.pool.UsageDetails", wants_arg=True, dest_adminvm=True)
async def pool_usage_details(call: Call) -> str:
    pool = call.app.pools[_pool_name(call)]
    details = await blocking(pool.usage_details)
    return _key_values({key: str(value) for key, value in details.items()})


@method("admin.pool.volume.List", wants_arg=True, dest_adminvm=True)
async def pool_volume_list(call: Call) -> str:
    pool = call.app.pools[_pool_name(call)]
    volumes = await blocking(pool.list_volumes)
    return "".join(f"{volume.vid}\n" for volume in volumes)


@method("admin.pool.Add", wants_arg=True, wants_payload=True, dest_adminvm=True, writes=True)
async def pool_add(call: Call) -> str:
    if call.arg not in driver_names():
        raise QubesValueError(f"No such storage driver: {call.arg!r}")
    settings: dict[str, str] = {}
    for line in call.text_payload().splitlines():
        key, sep, value = line.partition("=")
        if not line.strip():
            continue
        if not sep or not key:
            raise QubesValueError(f"Invalid pool setting {line!r}: expected key=value")
        settings[key] = value
    name = settings.pop("name", "")
    if not name:
        raise QubesValueError("A new pool needs name=")
    if name in call.app.pools:
        raise QubesValueError(f"Pool {name} already exists")
    unknown = set(settings) - set(driver_parameters(call.arg))
    if unknown:
        raise QubesValueError(
            f"Unknown settings for driver {call.arg}: {', '.join(sorted(unknown))}")
    pool = create_pool(call.arg, name, **settings)
    await blocking(pool.setup)
    call.app.pools[name] = pool
    call.app.fire_event("pool-add", pool=name)
    return ""


@method("admin.pool.Remove", wants_arg=True, dest_adminvm=True, writes=True)
async def pool_remove(call: Call) -> str:
    name = _pool_name(call)
    users = sorted({vm.name for vm in call.app.domains
                    for config in vm.storage.configs.values() if config.pool == name})
    defaults = [prop for prop in call.app.property_list()
                if prop.startswith("default_pool") and call.app.get(prop) == name]
    if users or defaults:
        raise QubesException(f"Pool {name} is in use by: {', '.join(users + defaults)}")
    pool = call.app.pools.pop(name)
    await blocking(pool.destroy)
    call.app.fire_event("pool-delete", pool=name)
    return ""


@method("admin.pool.Set.revisions_to_keep", wants_arg=True, wants_payload=True,
        dest_adminvm=True, writes=True)
async def pool_set_revisions(call: Call) -> str:
    call.app.pools[_pool_name(call)].revisions_to_keep = call.text_payload().strip()
    call.app.fire_event("pool-changed", pool=call.arg)
    return ""


@method("admin.pool.Set.ephemeral_volatile", wants_arg=True, wants_payload=True,
        dest_adminvm=True, writes=True)
async def pool_set_ephemeral(call: Call) -> str:
    call.app.pools[_pool_name(call)].ephemeral_volatile = call.text_payload().strip()
    call.app.fire_event("pool-changed", pool=call.arg)
    return ""
