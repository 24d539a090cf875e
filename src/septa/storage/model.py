"""The values of the storage model: volume configuration, block devices, errors, parsing.

The live objects are :class:`septa.storage.volume.Volume` and
:class:`septa.storage.pool.Pool`; this module holds what they exchange with the rest of
Septa.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from lxml import etree

from septa.core.errors import QubesValueError, StoragePoolException
from septa.storage.copy import Progress

__all__ = [
    "BackingFile", "BlockDevice", "DiskFormat", "Progress", "StorageValueError",
    "VolumeConfig", "check_name", "check_vid", "parse_bool", "parse_int",
]

DiskFormat = Literal["raw", "qcow2"]
_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.+-]*$")
_VID_PART = re.compile(r"^[A-Za-z0-9_.+-]+$")


class StorageValueError(StoragePoolException, QubesValueError):
    """A value given to the storage layer is not acceptable (wire name QubesValueError)."""

    @property
    def wire_name(self) -> str:
        return "QubesValueError"


def parse_bool(value: str | bool | int, what: str = "value") -> bool:
    """Qubes' reading of a boolean setting."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return bool(value)
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise StorageValueError(f"Invalid boolean for {what}: {value!r}")


def parse_int(value: str | int, what: str, minimum: int | None = None) -> int:
    if isinstance(value, bool):
        raise StorageValueError(f"Invalid {what}: {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise StorageValueError(f"Invalid {what}: {value!r}") from None
    if minimum is not None and number < minimum:
        raise StorageValueError(f"Invalid {what}: {number} (must be at least {minimum})")
    return number


def check_name(name: str, what: str) -> str:
    """A qube, volume or pool name safe to use in a path or an LVM name."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise StorageValueError(f"Invalid {what}: {name!r}")
    return name


def check_vid(vid: str) -> str:
    """A relative volume id made of safe path components."""
    parts = vid.split("/") if isinstance(vid, str) else [""]
    if not all(_VID_PART.match(p) and p not in (".", "..") for p in parts):
        raise StorageValueError(f"Invalid volume id: {vid!r}")
    return vid


@dataclass(frozen=True)
class BackingFile:
    """One image below the top of a qcow2 chain."""

    path: str
    format: DiskFormat


@dataclass(frozen=True)
class BlockDevice:
    """What the hypervisor attaches for one volume of a running qube.

    ``source_type`` is ``file`` (an image file) or ``block`` (a block device such as a thin
    volume). For ``qcow2`` images, ``backing`` lists the chain below ``path``, nearest first,
    each file with its format (the same chain is recorded in the image headers).
    ``ephemeral`` asks the hypervisor to encrypt the disk with a throw-away key.
    """

    path: str
    name: str
    format: DiskFormat = "raw"
    readonly: bool = False
    source_type: Literal["file", "block"] = "file"
    backing: tuple[BackingFile, ...] = ()
    ephemeral: bool = False


_BOOL_KEYS = ("rw", "snap_on_start", "save_on_stop")


@dataclass
class VolumeConfig:
    """The configuration of one volume of a qube, as in qubes.xml's ``<volume>`` element.

    ``pool`` None means the default pool for that volume name; ``source`` is the vid of
    the volume a ``snap_on_start`` volume snapshots (in the same pool); ``size`` is in
    bytes; ``revisions_to_keep`` and ``ephemeral`` None mean the pool's default; ``vid``
    is set once the volume exists in a pool.
    """

    name: str
    pool: str | None = None
    size: int | None = None
    rw: bool = False
    snap_on_start: bool = False
    save_on_stop: bool = False
    source: str | None = None
    revisions_to_keep: int | None = None
    ephemeral: bool | None = None
    vid: str | None = None

    def to_attrs(self) -> dict[str, str]:
        """The attributes of the Qubes ``<volume>`` element, values as Qubes writes them."""
        attrs = {"name": self.name}
        if self.pool is not None:
            attrs["pool"] = self.pool
        if self.vid is not None:
            attrs["vid"] = self.vid
        if self.revisions_to_keep is not None:
            attrs["revisions_to_keep"] = str(self.revisions_to_keep)
        for key in _BOOL_KEYS:
            attrs[key] = str(bool(getattr(self, key)))
        if self.size:
            attrs["size"] = str(self.size)
        if self.source is not None:
            attrs["source"] = self.source
        if self.ephemeral is not None:
            attrs["ephemeral"] = str(self.ephemeral)
        return attrs

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, str]) -> VolumeConfig:
        if "name" not in attrs:
            raise StorageValueError("A volume element has no name")
        size = attrs.get("size")
        keep = attrs.get("revisions_to_keep")
        ephemeral = attrs.get("ephemeral")
        return cls(
            name=attrs["name"], pool=attrs.get("pool"), vid=attrs.get("vid"),
            size=parse_int(size, "volume size", 0) if size else None,
            revisions_to_keep=parse_int(keep, "revisions_to_keep", -1) if keep else None,
            source=attrs.get("source") or None,
            ephemeral=parse_bool(ephemeral, "ephemeral") if ephemeral is not None else None,
            **{key: parse_bool(attrs.get(key, "False"), key) for key in _BOOL_KEYS},
        )

    def to_xml(self) -> Any:
        return etree.Element("volume", self.to_attrs())

    @classmethod
    def from_xml(cls, element: Any) -> VolumeConfig:
        return cls.from_attrs({str(k): str(v) for k, v in element.attrib.items()})

    def copy(self, **changes: Any) -> VolumeConfig:
        return replace(self, **changes)
