"""The registry: every qube, the labels and the global properties of one Septa instance.

Creating and removing qubes, allocating qids and uuids, refusing to remove a qube that
others still use, and fanning out every event to the global listeners (the Admin API
event stream, plug-ins) happen here. Loading and saving are in :mod:`septa.core.store`.
"""

from __future__ import annotations

import secrets
import uuid as uuidlib
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from septa.core.errors import (
    QubesValueError,
    QubesVMInUseError,
    QubesVMNotFoundError,
    QubesVMNotHaltedError,
)
from septa.core.events import Emitter, Listener
from septa.core.labels import Label, Labels
from septa.core.names import validate_name
from septa.core.properties import Property, PropertyHolder

if TYPE_CHECKING:
    from septa.core.lifecycle import Runtime

from septa.core.vm import (
    AdminVM,
    BaseVM,
    DispVM,
    check_disposable_template,
    check_provides_network,
    check_vm_class,
    validate_class,
)
from septa.paths import Paths
from septa.storage import Pool, default_pools

DOM0_UUID = "00000000-0000-0000-0000-000000000000"
MAX_QID = 254 * 256
#: disposables are numbered from 1 to this (random, as in Qubes)
MAX_DISPID = 9999


class VMCollection:
    """The qubes of the registry, found by name, ``uuid:<uuid>``, qid or uuid."""

    def __init__(self) -> None:
        self._by_name: dict[str, BaseVM] = {}
        self._by_qid: dict[int, BaseVM] = {}
        self._by_uuid: dict[str, BaseVM] = {}
        self._sorted: list[BaseVM] | None = None

    def __iter__(self) -> Iterator[BaseVM]:
        if self._sorted is None:
            self._sorted = sorted(self._by_name.values(), key=lambda vm: vm.qid)
        return iter(self._sorted)

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except QubesVMNotFoundError:
            return False
        return True

    def __getitem__(self, key: str | int) -> BaseVM:
        found: BaseVM | None
        if isinstance(key, int):
            found = self._by_qid.get(key)
        elif key.startswith("uuid:"):
            found = self._by_uuid.get(key[5:])
        else:
            found = self._by_name.get(key)
        if found is None:
            raise QubesVMNotFoundError(str(key))
        return found

    def add(self, vm: BaseVM) -> None:
        if vm.name in self._by_name:
            raise QubesValueError(f"A qube named {vm.name} already exists")
        if vm.qid in self._by_qid:
            raise QubesValueError(f"qid {vm.qid} is already used")
        if vm.uuid in self._by_uuid:
            raise QubesValueError(f"uuid {vm.uuid} is already used")
        self._by_name[vm.name] = vm
        self._by_qid[vm.qid] = vm
        self._by_uuid[vm.uuid] = vm
        self._sorted = None

    def discard(self, vm: BaseVM) -> None:
        if self._by_name.get(vm.name) is vm:
            del self._by_name[vm.name]
            del self._by_qid[vm.qid]
            del self._by_uuid[vm.uuid]
            self._sorted = None

    def free_qid(self) -> int:
        for qid in range(1, MAX_QID):
            if qid not in self._by_qid:
                return qid
        raise QubesValueError("No free qid left")

    def dispid_for(self, name: str) -> int:
        """The number of a new disposable ``name``: N for ``dispN`` when N is free."""
        number = name[4:]
        if name.startswith("disp") and number.isdigit() and 0 < int(number) <= MAX_DISPID \
                and all(vm.get_or("dispid", None) != int(number) for vm in self._by_name.values()):
            return int(number)
        return self.free_dispid()

    def free_dispid(self) -> int:
        """An unused disposable number, chosen at random (as Qubes does), so that a new
        disposable's name does not repeat the one that just went away."""
        used = {vm.get_or("dispid", None) for vm in self._by_name.values()}
        used |= {int(name[4:]) for name in self._by_name
                 if name.startswith("disp") and name[4:].isdigit()}
        for _ in range(64):
            dispid = secrets.randbelow(MAX_DISPID) + 1
            if dispid not in used:
                return dispid
        for dispid in range(1, MAX_QID):
            if dispid not in used:
                return dispid
        raise QubesValueError("No free dispid left")


def _pool_default(app: Qubes) -> Any:
    return app.get("default_pool")


class Qubes(PropertyHolder):
    """The registry of one Septa instance (Qubes' ``qubes.Qubes`` app object)."""

    own_properties = PropertyHolder.declare(
        Property("clockvm", "vm", default=None, doc="Qube that keeps time for the others"),
        Property("check_updates_vm", "bool", default=True, doc="Check qubes for updates"),
        Property("default_audiovm", "vm", default=lambda app: app.domains["dom0"],
                 doc="Default audio backend"),
        Property("default_guivm", "vm", default=lambda app: app.domains["dom0"],
                 doc="Default GUI backend"),
        Property("default_dispvm", "vm", default=None, setter=check_disposable_template,
                 doc="Default disposable template"),
        Property("default_kernel", "str", default="", doc="Default kernel (empty: the template's)"),
        Property("default_netvm", "vm", default=None, setter=check_provides_network,
                 doc="Default netvm of new qubes"),
        Property("default_pool", "str", default="varlibqubes", doc="Default storage pool"),
        Property("default_pool_kernel", "str", default="linux-kernel",
                 doc="Default pool of kernel volumes"),
        Property("default_pool_private", "str", default=_pool_default,
                 doc="Default pool of private volumes"),
        Property("default_pool_root", "str", default=_pool_default,
                 doc="Default pool of root volumes"),
        Property("default_pool_volatile", "str", default=_pool_default,
                 doc="Default pool of volatile volumes"),
        Property("default_qrexec_timeout", "int", default=60, doc="Default qrexec_timeout"),
        Property("default_shutdown_timeout", "int", default=60, doc="Default shutdown_timeout"),
        Property("default_template", "vm", default=None, setter=check_vm_class("TemplateVM"),
                 doc="Default template of new qubes"),
        Property("management_dispvm", "vm", default=None, setter=check_disposable_template,
                 doc="Default disposable for management"),
        Property("stats_interval", "int", default=3, doc="Seconds between admin.vm.Stats"),
        Property("updatevm", "vm", default=None, doc="Qube that fetches updates for dom0"),
    )

    def __init__(self, paths: Paths) -> None:
        super().__init__()
        self.app = self
        self.paths = paths
        self.labels = Labels()
        self.domains = VMCollection()
        self.unknown_xml: list[Any] = []
        self.extensions: list[Any] = []
        self.pools: dict[str, Pool] = {}
        self.runtime: Runtime | None = None

    def __str__(self) -> str:
        return "dom0"

    def setup_defaults(self) -> None:
        """A fresh registry: the 8 labels, dom0 and the default storage pools."""
        self.labels.add_defaults()
        self.ensure_dom0()
        for pool in default_pools(self.paths):
            pool.setup()
            self.pools[pool.name] = pool

    def ensure_dom0(self) -> None:
        if "dom0" not in self.domains:
            dom0 = AdminVM(self, "dom0", 0, DOM0_UUID)
            dom0.load_value("label", self.labels["black"])
            self._attach(dom0)

    def load_extensions(self) -> None:
        """Plug-ins: each entry point of group ``septa.extensions`` is called with the registry."""
        for entry in entry_points(group="septa.extensions"):
            self.extensions.append(entry.load()(self))

    def _attach(self, vm: BaseVM) -> None:
        self.domains.add(vm)
        vm.add_listener(self._forward)

    def _forward(self, subject: Any, event: str, kwargs: dict[str, Any]) -> None:
        self.fire_event_from(subject, event, kwargs)

    def fire_event_from(self, subject: Any, event: str, kwargs: dict[str, Any]) -> None:
        for listener in list(self._global_listeners):
            listener(subject, event, kwargs)

    @property
    def _global_listeners(self) -> list[Listener]:
        listeners: list[Listener] = self.__dict__.setdefault("_global", [])
        return listeners

    def add_global_listener(self, listener: Listener) -> None:
        self._global_listeners.append(listener)

    def remove_global_listener(self, listener: Listener) -> None:
        if listener in self._global_listeners:
            self._global_listeners.remove(listener)

    def fire_event(self, event: str, **kwargs: Any) -> list[Any]:
        results = Emitter.fire_event(self, event, **kwargs)
        self.fire_event_from(self, event, kwargs)
        return results

    def add_vm(self, vm: BaseVM) -> None:
        """Attach a loaded qube (no events, no checks beyond uniqueness)."""
        self._attach(vm)

    def create_vm(self, klass: str, name: str, label: Label | str,
                  template: BaseVM | str | None = None,
                  properties: dict[str, str] | None = None) -> BaseVM:
        """Create a qube in the registry; on any error nothing is added.

        Its volumes are planned (``vm.storage``) but not made: the caller creates them
        (blocking work) and calls :meth:`forget_vm` if that fails.
        """
        cls = validate_class(klass)
        validate_name(name)
        if name in self.domains:
            raise QubesValueError(f"VM {name} already exists")
        vm = cls(self, name, self.domains.free_qid(), str(uuidlib.uuid4()))
        vm.set("label", label if isinstance(label, Label) else self.labels[label], loading=True)
        if "template" in cls.property_defs:
            if template is None:
                template = self.get("default_template") if klass == "AppVM" else None
            if template is None:
                raise QubesValueError(f"A {klass} needs a template and no default is set")
            tpl = template if isinstance(template, BaseVM) else self.domains[template]
            vm.set("template", tpl, loading=True)
            vm.property_def("template").setter(vm, vm.property_def("template"), tpl)  # type: ignore[misc]
        elif template is not None:
            raise QubesValueError(f"A {klass} has no template")
        if isinstance(vm, DispVM):
            vm.set("dispid", self.domains.dispid_for(name), loading=True)
        for prop, text in (properties or {}).items():
            if vm.property_def(prop).write_once and prop in ("name", "qid", "uuid"):
                raise QubesValueError(f"Property {prop} cannot be set at creation")
            vm.set(prop, vm.parse(prop, text), loading=True)
        vm.storage.plan()
        self._attach(vm)
        self.fire_event("domain-add", vm=vm)
        return vm

    def forget_vm(self, vm: BaseVM) -> None:
        """Take a qube out of the registry without checks (undoing a failed creation)."""
        vm.remove_listener(self._forward)
        self.domains.discard(vm)
        self.fire_event("domain-delete", vm=vm)

    def users_of(self, vm: BaseVM) -> list[str]:
        """Who still uses ``vm``: ``"<qube>.<property>"`` or ``"global <property>"`` entries."""
        users: list[str] = []
        for prop in self.property_list():
            if self.property_def(prop).type == "vm" and self._points_at(self, prop, vm):
                users.append(f"global property {prop}")
        for other in self.domains:
            if other is vm:
                continue
            for prop in other.property_list():
                definition = other.property_def(prop)
                if definition.type == "vm" and not definition.read_only \
                        and self._points_at(other, prop, vm):
                    users.append(f"{other.name} property {prop}")
        return users

    @staticmethod
    def _points_at(holder: PropertyHolder, prop: str, vm: BaseVM) -> bool:
        try:
            return holder.get(prop) is vm
        except (AttributeError, QubesVMNotFoundError):
            return False

    def remove_vm(self, vm: BaseVM) -> None:
        if isinstance(vm, AdminVM):
            raise QubesValueError("dom0 cannot be removed")
        if vm.power_state() != "Halted":
            raise QubesVMNotHaltedError(f"Domain is running: {vm.name}")
        users = self.users_of(vm)
        if users:
            raise QubesVMInUseError(f"VM {vm.name} is in use: " + ", ".join(users))
        self.fire_event("domain-pre-delete", vm=vm)
        self.forget_vm(vm)
