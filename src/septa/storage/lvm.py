"""Calling LVM: thin volume operations and the ``lvs`` report, as argument lists.

Where no udev daemon runs (containers, minimal hosts), every command gets a ``--config``
that makes LVM create device nodes itself instead of waiting for udev; the host's LVM
configuration files are never changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from septa.storage.command import ToolError, run

NO_UDEV_CONFIG = ("activation{udev_sync=0 udev_rules=0} "
                  "devices{obtain_device_list_from_udev=0}")
_FIELDS = ("vg_name,lv_name,pool_lv,lv_size,data_percent,lv_attr,origin,lv_metadata_size,"
           "metadata_percent")


@dataclass(frozen=True)
class LvInfo:
    """One logical volume as ``lvs`` reports it (sizes in bytes)."""

    vg: str
    name: str
    pool_lv: str
    size: int
    usage: int
    attr: str
    origin: str
    metadata_size: int | None
    metadata_usage: int | None

    @property
    def is_thin_pool(self) -> bool:
        return self.attr.startswith("t")

    @property
    def active(self) -> bool:
        return len(self.attr) > 4 and self.attr[4] == "a"


def udev_running() -> bool:
    return os.path.exists("/run/udev/control")


def _number(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    return int(float(text.rstrip("B")))


def parse_report(output: str) -> dict[str, LvInfo]:
    """``lvs --reportformat json`` output -> LV name -> info."""
    result: dict[str, LvInfo] = {}
    data = json.loads(output)
    for report in data.get("report", []):
        for row in report.get("lv", []):
            size = _number(row.get("lv_size", "")) or 0
            percent = row.get("data_percent", "").strip()
            meta_size = _number(row.get("lv_metadata_size", ""))
            meta_percent = row.get("metadata_percent", "").strip()
            info = LvInfo(
                vg=row["vg_name"], name=row["lv_name"], pool_lv=row.get("pool_lv", ""),
                size=size, usage=int(size * float(percent) / 100) if percent else 0,
                attr=row.get("lv_attr", ""), origin=row.get("origin", ""),
                metadata_size=meta_size,
                metadata_usage=(int(meta_size * float(meta_percent) / 100)
                                if meta_size is not None and meta_percent else None))
            result[info.name] = info
    return result


class LvmTool:
    """The LVM commands the ``lvm_thin`` driver uses.

    ``command`` is how to call ``lvm`` and ``dev_dir`` where LVM puts device links
    (``<dev_dir>/<vg>/<lv>``); both can be replaced, for instance by a test double.
    """

    def __init__(self, command: Sequence[str] = ("lvm",), dev_dir: Path = Path("/dev")) -> None:
        self.command = list(command)
        self.dev_dir = dev_dir
        #: Called after every command that may change volumes (even a failed one).
        self.on_change: Callable[[], None] | None = None

    def run(self, subcommand: str, *args: str) -> str:
        extra = [] if udev_running() else ["--config", NO_UDEV_CONFIG]
        try:
            return run([*self.command, subcommand, *extra, *args],
                       env={"LVM_SUPPRESS_FD_WARNINGS": "1"})
        finally:
            if subcommand != "lvs" and self.on_change is not None:
                self.on_change()

    def device(self, vg: str, lv: str) -> Path:
        return self.dev_dir / vg / lv

    def lvs(self, vg: str) -> dict[str, LvInfo]:
        out = self.run("lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
                       "-o", _FIELDS, "--", vg)
        try:
            return parse_report(out)
        except (ValueError, KeyError, TypeError) as exc:
            raise ToolError(f"cannot read the lvs report: {exc}") from exc

    def create_thin(self, vg: str, pool: str, lv: str, size: int) -> None:
        self.run("lvcreate", "--thin", "--setactivationskip=n", "--activate=y",
                 f"--name={lv}", f"--virtualsize={size}B", "--", f"{vg}/{pool}")

    def snapshot(self, vg: str, origin: str, lv: str) -> None:
        """A thin snapshot of the thin LV ``origin`` (no size given: LVM makes it thin)."""
        self.run("lvcreate", "--snapshot", "--setactivationskip=n", "--activate=y",
                 f"--name={lv}", "--", f"{vg}/{origin}")

    def remove(self, vg: str, lv: str) -> None:
        self.run("lvremove", "--force", "--", f"{vg}/{lv}")

    def rename(self, vg: str, old: str, new: str) -> None:
        self.run("lvrename", "--", f"{vg}/{old}", f"{vg}/{new}")

    def resize(self, vg: str, lv: str, size: int) -> None:
        self.run("lvresize", f"--size={size}B", "--", f"{vg}/{lv}")

    def activate(self, vg: str, lv: str) -> None:
        self.run("lvchange", "--activate=y", "--", f"{vg}/{lv}")
