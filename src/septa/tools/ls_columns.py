"""The columns and preset formats of qvm-ls.

A column turns a qube into one cell. Besides the columns defined here, any qube
property can be a column: its head is the property name upper-cased with ``_`` as
``-``. An empty or missing value shows as ``-``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from septa.client.errors import (
    QubesDaemonAccessError,
    QubesNoSuchPropertyError,
    QubesPropertyUnsetError,
)
from septa.client.properties import PropertyValue
from septa.client.vm import QubesVM

Fetch = Callable[[QubesVM], "str | int | None"]

#: Preset column sets (``--format``), as Qubes 4.3 defines them.
FORMATS: dict[str, tuple[str, ...]] = {
    "simple": ("name", "state", "class", "label", "template", "netvm"),
    "network": ("name", "state", "netvm", "ip", "ipback", "gateway"),
    "kernel": ("name", "state", "class", "template", "kernel", "kernelopts"),
    "full": ("name", "state", "class", "label", "qid", "xid", "uuid"),
    "prefs": ("name", "label", "template", "netvm", "vcpus", "initialmem", "maxmem", "virt_mode"),
    "disk": (
        "name",
        "state",
        "disk",
        "priv-curr",
        "priv-max",
        "priv-used",
        "root-curr",
        "root-max",
        "root-used",
    ),
}

#: Columns sorted as numbers by ``--sort``.
NUMERIC_COLUMNS = frozenset(
    {
        "MEMORY",
        "DISK",
        "PRIV-CURR",
        "PRIV-MAX",
        "ROOT-CURR",
        "XID",
        "ROOT-MAX",
        "MAXMEM",
        "QREXEC-TIMEOUT",
        "SHUTDOWN-TIMEOUT",
        "VCPUS",
        "PRIV-USED",
        "ROOT-USED",
    }
)


# -- property access with one GetAll per qube ------------------------------------------


def prop_value(vm: QubesVM, name: str) -> PropertyValue | None:
    """A property of the qube, None if it has no such property (all fetched at once)."""
    if not vm.props.is_cached:
        try:
            vm.props.load_all()
        except QubesDaemonAccessError:
            try:
                return vm.props.get(name)
            except (QubesNoSuchPropertyError, QubesDaemonAccessError):
                return None
    return vm.props.cached(name)


def prop_text(vm: QubesVM, name: str) -> str | None:
    """The property as text; None when missing, unset or an empty reference."""
    value = prop_value(vm, name)
    if value is None or not value.has_value or value.is_none:
        return None
    return value.text


def prop_true(vm: QubesVM, name: str) -> bool:
    """Whether the property exists and is true (non-empty, non-zero)."""
    value = prop_value(vm, name)
    if value is None:
        return False
    try:
        return value.as_bool()
    except QubesPropertyUnsetError:
        return False


# -- the columns --------------------------------------------------------------------


class Column(NamedTuple):
    """One qvm-ls column: its head, how to get a cell, and its description."""

    head: str
    fetch: Fetch
    doc: str = ""

    def cell(self, vm: QubesVM) -> str:
        """The cell text for a qube (``-`` when there is no value)."""
        try:
            value = self.fetch(vm)
        except (AttributeError, ZeroDivisionError):
            value = None
        text = "" if value is None else str(value)
        return text or "-"


def property_column(name: str) -> Column:
    """A column showing the property ``name`` (``-`` may stand for ``_``)."""
    prop = name.lower().replace("-", "_")
    head = prop.replace("_", "-").upper()
    if prop == "name":
        return Column(head, lambda vm: vm.name)
    return Column(head, lambda vm: prop_text(vm, prop))


def _volume_field(vm: QubesVM, volume: str, field: str) -> int:
    """Size or usage of a volume in MiB, 0 if the qube has no such volume."""
    vol = vm.volumes.get(volume)
    if vol is None:
        return 0
    return (vol.size if field == "size" else vol.usage) // 1024 // 1024


def _volume_used(vm: QubesVM, volume: str) -> str | int:
    size = _volume_field(vm, volume, "size")
    if size == 0:
        return 0
    return f"{_volume_field(vm, volume, 'usage') * 100 // size}%"


def _volume_pool(vm: QubesVM, volume: str) -> str:
    vol = vm.volumes.get(volume)
    return vol.pool if vol is not None else "-"


def _gateway(vm: QubesVM) -> str | None:
    netvm = prop_value(vm, "netvm")
    if netvm is None or netvm.is_none or not netvm.has_value:
        return None
    return prop_text(vm.app.domains.get_blind(netvm.text), "gateway")


def _memory(vm: QubesVM) -> int | None:
    return vm.get_mem() // 1024 if vm.is_running() else None


_TYPE_LETTERS = {
    "AdminVM": "0",
    "TemplateVM": "t",
    "AppVM": "a",
    "StandaloneVM": "s",
    "DispVM": "d",
}
_POWER_LETTERS = ("running", "transient", "paused", "suspended", "halting", "dying", "crashed")
#: (position letter, property) of the simple flags, positions 3 to 8.
_SIMPLE_FLAGS = (
    ("U", "updateable"),
    ("N", "provides_network"),
    ("R", "installed_by_rpm"),
    ("i", "internal"),
    ("D", "debug"),
    ("A", "autostart"),
)


def _flags(vm: QubesVM) -> str:
    letter = _TYPE_LETTERS.get(vm.klass)
    if letter is not None and letter != "0" and prop_text(vm, "virt_mode") == "hvm":
        letter = letter.upper()
    state = vm.get_power_state().lower()
    power = "?" if state == "unknown" else state[0] if state in _POWER_LETTERS else None
    flags = [letter or "-", power or "-"]
    flags += [flag if prop_true(vm, prop) else "-" for flag, prop in _SIMPLE_FLAGS]
    return "".join(flags)


_FLAGS_DOC = (
    "Eight status letters. 1: type (0 AdminVM, a AppVM, d DispVM, s StandaloneVM, "
    "t TemplateVM; upper case when virt_mode is hvm). 2: power (r running, t transient, "
    "p paused, s suspended, h halting, d dying, c crashed, ? unknown). 3: U updateable. "
    "4: N provides network. 5: R installed by package. 6: i internal. 7: D debug. "
    "8: A autostart."
)

_DEFINED = (
    Column("STATE", lambda vm: vm.get_power_state(), "Power state of the qube."),
    Column("CLASS", lambda vm: vm.klass, "The qube's class."),
    Column("GATEWAY", _gateway, "Gateway address given by the qube's netvm."),
    Column("MEMORY", _memory, "Memory in use by a running qube, in MiB."),
    Column(
        "DISK",
        lambda vm: vm.get_disk_utilization() // 1024 // 1024,
        "Disk space used by all volumes, in MiB.",
    ),
    Column(
        "PRIV-CURR",
        lambda vm: _volume_field(vm, "private", "usage"),
        "Space used in the private volume (/home, /usr/local), in MiB.",
    ),
    Column(
        "PRIV-MAX",
        lambda vm: _volume_field(vm, "private", "size"),
        "Size of the private volume, in MiB.",
    ),
    Column("PRIV-POOL", lambda vm: _volume_pool(vm, "private"), "Pool of the private volume."),
    Column(
        "PRIV-USED",
        lambda vm: _volume_used(vm, "private"),
        "Private volume usage as a percentage of its size.",
    ),
    Column(
        "ROOT-CURR",
        lambda vm: _volume_field(vm, "root", "usage"),
        "Space used in the root volume (/usr, /etc, ...), in MiB.",
    ),
    Column(
        "ROOT-MAX", lambda vm: _volume_field(vm, "root", "size"), "Size of the root volume, in MiB."
    ),
    Column("ROOT-POOL", lambda vm: _volume_pool(vm, "root"), "Pool of the root volume."),
    Column(
        "ROOT-USED",
        lambda vm: _volume_used(vm, "root"),
        "Root volume usage as a percentage of its size.",
    ),
    Column("FLAGS", _flags, _FLAGS_DOC),
)

#: The columns defined here (not counting property columns), by head.
COLUMNS: dict[str, Column] = {col.head: col for col in _DEFINED}


def get_column(name: str) -> Column:
    """The column for a ``--fields`` entry: a defined one, else a property column."""
    head = name.upper().replace("_", "-")
    return COLUMNS.get(head) or property_column(name)


def needs_properties(columns: list[Column]) -> bool:
    """Whether showing these columns reads qube properties."""
    cheap = {"NAME", "STATE", "CLASS"}
    return any(col.head not in cheap for col in columns)
