"""The qube classes: AdminVM (dom0), TemplateVM, AppVM, StandaloneVM, DispVM.

Each class declares its properties with the defaults and inheritance Qubes 4.3 has:
template-based qubes take memory, vcpus, kernel, timeouts ... from their template;
netvm, default_dispvm, guivm ... come from global properties of the registry.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from septa.core.errors import QubesPropertyValueError, QubesValueError
from septa.core.features import Features, Tags
from septa.core.names import validate_name
from septa.core.properties import Property, PropertyHolder
from septa.core.volumes import QubeStorage
from septa.network.guest_config import VIRTUAL_DNS

if TYPE_CHECKING:
    from septa.core.app import Qubes

DEFAULT_KERNELOPTS = "console=hvc0 console=ttyS0 root=/dev/vda rw"
VIRT_MODES = ("hvm", "pv", "pvh")
_MAC = re.compile(r"\A([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}\Z")


def _from_template(name: str, fallback: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Default that inherits the template's value, else ``fallback(vm)``."""

    def default(vm: Any) -> Any:
        template = vm.template_or_none()
        if template is not None:
            return template.get(name)
        return fallback(vm)

    return default


def _global(name: str) -> Callable[[Any], Any]:
    return lambda vm: vm.app.get(name)


def _positive_int(vm: Any, prop: Property, value: Any) -> Any:
    if value is not None and value <= 0:
        raise QubesPropertyValueError(vm, prop.name, value, f"{prop.name} must be positive")
    return value


def _non_negative_int(vm: Any, prop: Property, value: Any) -> Any:
    if value is not None and value < 0:
        raise QubesPropertyValueError(vm, prop.name, value, f"{prop.name} must be non-negative")
    return value


def _virt_mode(vm: Any, prop: Property, value: str) -> str:
    if value.lower() not in VIRT_MODES:
        raise QubesPropertyValueError(
            vm, prop.name, value, f"virt_mode must be one of {', '.join(VIRT_MODES)}"
        )
    return value.lower()


def _mac(vm: Any, prop: Property, value: str) -> str:
    if not _MAC.match(value):
        raise QubesPropertyValueError(vm, prop.name, value, "Invalid MAC address")
    return value.lower()


def _ip(vm: Any, prop: Property, value: str | None) -> str | None:
    if not value:
        return None
    version = 4 if prop.name == "ip" else 6
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is None or address.version != version:
        raise QubesPropertyValueError(vm, prop.name, value, f"Invalid IPv{version} address")
    return str(address)


def _default_user(vm: Any, prop: Property, value: str) -> str:
    if not re.match(r"\A[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,31}\Z", value):
        raise QubesPropertyValueError(vm, prop.name, value, "Invalid user name")
    return value


def _kernelopts(vm: Any, prop: Property, value: str) -> str:
    if "\n" in value or "\0" in value:
        raise QubesPropertyValueError(vm, prop.name, value, "kernelopts must be one line")
    return value


def check_vm_class(*classes: str) -> Callable[[Any, Property, Any], Any]:
    """Validator: a ``vm`` property may only point at qubes of these classes."""

    def check(holder: Any, prop: Property, value: Any) -> Any:
        if value is not None and type(value).__name__ not in classes:
            raise QubesPropertyValueError(
                holder, prop.name, value,
                f"{prop.name} must be a qube of class {' or '.join(classes)}",
            )
        return value

    return check


def check_disposable_template(holder: Any, prop: Property, value: Any) -> Any:
    if value is not None and not value.get_or("template_for_dispvms", False):
        raise QubesPropertyValueError(
            holder, prop.name, value, f"VM {value} is not allowed to create disposables"
        )
    return value


def check_provides_network(holder: Any, prop: Property, value: Any) -> Any:
    if value is None:
        return value
    if not value.get_or("provides_network", False):
        raise QubesPropertyValueError(
            holder, prop.name, value, f"The {value} qube does not provide network"
        )
    if isinstance(holder, BaseVM):
        seen: set[str] = set()
        current: Any = value
        while current is not None and current.name not in seen:
            if current is holder:
                raise QubesPropertyValueError(
                    holder, prop.name, value, "Loops in network are unsupported"
                )
            seen.add(current.name)
            current = current.get_or("netvm", None)
    return value


def vmid_to_ipv4(prefix: str, vmid: int) -> str:
    return f"{prefix}.{(vmid >> 8) & 0xFF}.{vmid & 0xFF}"


def _default_ip(vm: Any) -> str | None:
    if vm.get_or("netvm", None) is None and not vm.get_or("provides_network", False):
        return None
    if isinstance(vm, DispVM):
        return vmid_to_ipv4("10.138", vm.get("dispid"))
    return vmid_to_ipv4("10.137", vm.qid)


def _gateway(vm: Any) -> str | None:
    return vm.get_or("ip", None) if vm.get_or("provides_network", False) else None


def _visible_gateway(vm: Any) -> str | None:
    netvm = vm.get_or("netvm", None)
    return netvm.get_or("gateway", None) if netvm is not None else None


def _dns(vm: Any) -> str | None:
    if vm.get_or("netvm", None) is None and not vm.get_or("provides_network", False):
        return None
    return " ".join(VIRTUAL_DNS)


class BaseVM(PropertyHolder):
    """What every qube has, dom0 included: identity, label, features, tags, notes."""

    own_properties = PropertyHolder.declare(
        Property("qid", "int", write_once=True, allow_none=False, clone=False,
                 doc="Internal, persistent identifier of the qube"),
        Property("name", "str", write_once=True, allow_none=False, clone=False,
                 setter=lambda vm, prop, value: validate_name(value),
                 doc="Name of the qube; cannot be changed (clone, then remove)"),
        Property("uuid", "str", write_once=True, allow_none=False, clone=False,
                 doc="UUID of the qube"),
        Property("label", "label", allow_none=False,
                 doc="Colour of the qube's windows and icons"),
        Property("klass", "str", computed=lambda vm: type(vm).__name__,
                 doc="Class of the qube"),
        Property("icon", "str", computed=lambda vm: vm.icon_name(),
                 doc="Name of the qube's icon"),
    )

    dir_name = "appvms"

    def __init__(self, app: Qubes, name: str, qid: int, uuid: str) -> None:
        super().__init__()
        self.app = app
        self.features = Features(self)
        self.tags = Tags(self)
        self.notes = ""
        self.unknown_xml: list[Any] = []
        self.storage = QubeStorage(self)
        for prop, value in (("name", name), ("qid", qid), ("uuid", uuid)):
            self.set(prop, value, loading=True)

    @property
    def name(self) -> str:
        return str(self._values["name"])

    @property
    def qid(self) -> int:
        return int(self._values["qid"])

    @property
    def uuid(self) -> str:
        return str(self._values["uuid"])

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def __lt__(self, other: BaseVM) -> bool:
        return self.name < other.name

    def get_or(self, name: str, fallback: Any) -> Any:
        """The value of a property, or ``fallback`` if the class lacks it or it has no value."""
        if name not in self.property_defs:
            return fallback
        try:
            return self.get(name)
        except AttributeError:
            return fallback

    def template_or_none(self) -> BaseVM | None:
        return self.get_or("template", None) if "template" in self.property_defs else None

    def icon_name(self) -> str:
        label = self.get_or("label", None)
        return f"appvm-{label}" if label is not None else ""

    @property
    def dir_path(self) -> Path:
        return self.app.paths.qubes_base / self.dir_name / self.name

    def remove_files(self) -> None:
        """Delete the volumes and the directory of a qube taken out of the registry
        (blocking: run it in the executor)."""
        self.storage.remove()
        shutil.rmtree(self.dir_path, ignore_errors=True)

    def power_state(self) -> str:
        runtime = self.app.runtime
        return runtime.power_state(self) if runtime is not None else "Halted"


class AdminVM(BaseVM):
    """dom0: the host itself, always present, qid 0."""

    own_properties = PropertyHolder.declare(
        Property("default_dispvm", "vm", default=_global("default_dispvm"),
                 setter=check_disposable_template, doc="Default disposable template"),
        Property("include_in_backups", "bool", default=True, doc="Include in backups"),
        Property("updateable", "bool", computed=lambda vm: True, doc="Has its own root"),
        Property("keyboard_layout", "str", default="us++", doc="Keyboard layout"),
        Property("devices_denied", "str", default="", doc="Denied device interfaces"),
        Property("icon", "str", computed=lambda vm: "adminvm-black", doc="Icon name"),
    )
    dir_name = "dom0"

    def power_state(self) -> str:
        return "Running"

    def icon_name(self) -> str:
        return "adminvm-black"


class QubesVM(BaseVM):
    """A qube that runs as a virtual machine."""

    own_properties = PropertyHolder.declare(
        Property("audiovm", "vm", default=_global("default_audiovm"), doc="Audio backend qube"),
        Property("guivm", "vm", default=_global("default_guivm"), doc="GUI backend qube"),
        Property("autostart", "bool", default=False, doc="Start with the host"),
        Property("backup_timestamp", "int", default=None, doc="Time of the last backup"),
        Property("bootmode", "str", default="default", doc="Boot mode"),
        Property("debug", "bool", default=False, doc="Debug mode: verbose console, no quiet"),
        Property("default_dispvm", "vm", default=_global("default_dispvm"),
                 setter=check_disposable_template, doc="Disposable template for its calls"),
        Property("default_user", "str",
                 default=_from_template("default_user", lambda vm: "user"),
                 setter=_default_user, doc="User that runs commands by default"),
        Property("devices_denied", "str", default="", doc="Denied device interfaces"),
        Property("include_in_backups", "bool", default=True, doc="Include in backups"),
        Property("installed_by_rpm", "bool", default=False, doc="Installed from a package"),
        Property("kernel", "str",
                 default=_from_template("kernel", _global("default_kernel")),
                 doc="Kernel to boot (empty: the one in the qube's own volume)"),
        Property("kernelopts", "str",
                 default=_from_template("kernelopts", lambda vm: DEFAULT_KERNELOPTS),
                 setter=_kernelopts, doc="Kernel command line"),
        Property("keyboard_layout", "str", default="us++", doc="Keyboard layout"),
        Property("mac", "str", default="00:16:3e:5e:6c:00", setter=_mac, doc="MAC address"),
        Property("management_dispvm", "vm",
                 default=_from_template("management_dispvm", _global("management_dispvm")),
                 setter=check_disposable_template, doc="Disposable for management"),
        Property("maxmem", "int", default=_from_template("maxmem", lambda vm: 4000),
                 setter=_non_negative_int, doc="Maximum memory in MiB"),
        Property("memory", "int", default=_from_template("memory", lambda vm: 400),
                 setter=_positive_int, doc="Initial memory in MiB"),
        Property("netvm", "vm",
                 default=lambda vm: None if vm.get("provides_network")
                 else vm.app.get("default_netvm"),
                 setter=check_provides_network, doc="Qube that gives this one network"),
        Property("provides_network", "bool", default=False, doc="Serves network to others"),
        Property("ip", "str", default=_default_ip, setter=_ip, doc="IPv4 address"),
        Property("ip6", "str", default=None, setter=_ip, doc="IPv6 address"),
        Property("qrexec_timeout", "int",
                 default=_from_template("qrexec_timeout", _global("default_qrexec_timeout")),
                 setter=_positive_int, doc="Seconds to wait for the agent at start"),
        Property("shutdown_timeout", "int",
                 default=_from_template("shutdown_timeout", _global("default_shutdown_timeout")),
                 setter=_positive_int, doc="Seconds to wait for a clean shutdown"),
        Property("stubdom_mem", "int", default=None, doc="Stub domain memory (unused on KVM)"),
        Property("updateable", "bool", computed=lambda vm: vm.template_or_none() is None,
                 doc="Has its own root filesystem"),
        Property("vcpus", "int", default=_from_template("vcpus", lambda vm: 2),
                 setter=_positive_int, doc="Number of virtual CPUs"),
        Property("virt_mode", "str", default="pvh", setter=_virt_mode,
                 doc="Virtualisation mode (on KVM: pvh/pv = direct kernel boot, hvm = firmware)"),
        Property("xid", "int", computed=lambda vm: -1, doc="Hypervisor id while running"),
        Property("stubdom_xid", "int", computed=lambda vm: -1, doc="Stub domain id"),
        Property("start_time", "str", computed=lambda vm: None, doc="Time the qube started"),
        Property("visible_ip", "str", computed=lambda vm: vm.get_or("ip", None),
                 doc="IPv4 address as seen by the qube"),
        Property("visible_ip6", "str", computed=lambda vm: vm.get_or("ip6", None),
                 doc="IPv6 address as seen by the qube"),
        Property("visible_gateway", "str", computed=_visible_gateway, doc="Default gateway"),
        Property("visible_gateway6", "str", computed=lambda vm: None, doc="IPv6 gateway"),
        Property("visible_netmask", "str",
                 computed=lambda vm: "255.255.255.255" if vm.get_or("ip", None) else None,
                 doc="Netmask"),
        Property("gateway", "str", computed=_gateway, doc="Gateway this qube offers"),
        Property("gateway6", "str", computed=lambda vm: None, doc="IPv6 gateway offered"),
        Property("dns", "str", computed=_dns, doc="DNS servers"),
    )


_TEMPLATE_DOC = "Template whose root filesystem this qube uses"


class AppVM(QubesVM):
    """A qube that boots its template's root and keeps only its own private volume."""

    own_properties = PropertyHolder.declare(
        Property("template", "vm", allow_none=False, setter=check_vm_class("TemplateVM"),
                 doc=_TEMPLATE_DOC),
        Property("template_for_dispvms", "bool", default=False,
                 doc="May serve as a disposable template"),
    )


class TemplateVM(QubesVM):
    """A qube that owns a root filesystem; its AppVMs boot from it. No network by default."""

    own_properties = PropertyHolder.declare(
        Property("netvm", "vm", default=None, setter=check_provides_network,
                 doc="Qube that gives this one network (none for templates by default)"),
        Property("appvm_default_bootmode", "str", default="default",
                 doc="Boot mode of AppVMs based on this template"),
    )
    dir_name = "vm-templates"


class StandaloneVM(QubesVM):
    """A qube with its own full copy of a root filesystem."""

    own_properties = PropertyHolder.declare(
        Property("template_for_dispvms", "bool", default=False,
                 doc="May serve as a disposable template"),
    )


class DispVM(QubesVM):
    """A disposable qube, made from a disposable template and destroyed after use."""

    own_properties = PropertyHolder.declare(
        Property("template", "vm", allow_none=False, write_once=True,
                 setter=check_disposable_template, doc=_TEMPLATE_DOC),
        Property("dispid", "int", default=None, doc="Number of this disposable"),
        Property("auto_cleanup", "bool", default=False, doc="Remove when it stops"),
        Property("include_in_backups", "bool", default=False, doc="Include in backups"),
        Property("default_dispvm", "vm",
                 default=lambda vm: vm.get("template").get("default_dispvm"),
                 setter=check_disposable_template, doc="Disposable template for its calls"),
    )
    dir_name = "appvms"


VM_CLASSES: dict[str, type[BaseVM]] = {
    cls.__name__: cls for cls in (AdminVM, AppVM, DispVM, StandaloneVM, TemplateVM)
}
CREATABLE = ("AppVM", "DispVM", "StandaloneVM", "TemplateVM")


def require_template(cls: type[BaseVM]) -> bool:
    return "template" in cls.property_defs


def validate_class(name: str) -> type[BaseVM]:
    if name not in CREATABLE:
        raise QubesValueError(f"Invalid VM class: {name!r}")
    return VM_CLASSES[name]

