"""What a backup holds: the qubes chosen, the files of each, and the registry copy.

As in Qubes' backup format 4, the backup's ``qubes.xml`` is the whole registry with the
feature ``backup-content`` on every qube (``1`` for the qubes in the backup, empty for
the others), and on each qube in the backup ``backup-path`` (``vm<qid>/``, the folder
of its files in the backup) and ``backup-size``. Each qube contributes its
``save_on_stop`` volumes as ``<volume>.img`` (raw images), its ``firewall.xml`` and its
``notes.txt``; a qube with none of these gets an empty file so that its folder exists.
dom0's home folder is not backed up.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lxml import etree

from septa.core import store
from septa.core.errors import QubesException
from septa.core.firewall import FIREWALL_FILE
from septa.core.vm import AdminVM

if TYPE_CHECKING:
    from septa.core.app import Qubes
    from septa.core.vm import BaseVM

NOTES_FILE = "notes.txt"
EMPTY_FILE = "empty"
#: features of a qube's preloaded disposables that mean nothing after a restore
_DROPPED_FEATURE_PREFIX = "preload-dispvm"
_KEPT_FEATURES = ("preload-dispvm-max",)


@dataclass
class BackupFile:
    """One file of a qube in the backup; ``open_path`` gives the path to read (a volume
    export), ``close_path`` releases it."""

    name: str
    size: int
    open_path: Callable[[], str]
    close_path: Callable[[str], None] = lambda path: None


@dataclass
class QubeContent:
    vm: BaseVM
    files: list[BackupFile] = field(default_factory=list)

    @property
    def subdir(self) -> str:
        return f"vm{self.vm.qid}/"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def matches(vm: BaseVM, name: str) -> bool:
    """Whether ``vm`` is ``name``: a qube name, ``@anyvm``, ``@tag:T`` or ``@type:CLASS``
    (as Qubes' backup profiles name qubes)."""
    if name == "@anyvm":
        return not isinstance(vm, AdminVM)
    if name.startswith("@tag:"):
        return name[len("@tag:"):] in vm.tags
    if name.startswith("@type:"):
        return type(vm).__name__ == name[len("@type:"):]
    return vm.name == name


def select_qubes(app: Qubes, names: Iterable[str] | None = None, exclude: Iterable[str] = ()
                 ) -> list[BaseVM]:
    """The qubes to back up: those ``names`` match (every qube with ``include_in_backups``
    when None), less those ``exclude`` matches; a plain name that is no qube is an error
    that names it."""
    wanted = list(names) if names is not None else None
    excluded = list(exclude)
    unknown = sorted(n for n in [*(wanted or ()), *excluded]
                     if not n.startswith("@") and n not in app.domains)
    if unknown:
        raise QubesException(f"No such qube: {', '.join(unknown)}")
    if wanted is None:
        chosen = [vm for vm in app.domains if vm.get_or("include_in_backups", False)]
    else:
        chosen = [vm for vm in app.domains if any(matches(vm, n) for n in wanted)]
    return [vm for vm in chosen if not isinstance(vm, AdminVM)
            and not any(matches(vm, n) for n in excluded)]


def qube_content(vm: BaseVM) -> QubeContent:
    """The files of ``vm`` that go into a backup."""
    content = QubeContent(vm)
    for name, volume in sorted(vm.storage.volumes.items()):
        if not volume.config.save_on_stop:
            continue
        content.files.append(BackupFile(
            f"{name}.img", volume.usage, open_path=volume.export,
            close_path=volume.export_end))
    directory = Path(vm.dir_path)
    for name in (FIREWALL_FILE, NOTES_FILE):
        path = directory / name
        if path.is_file():
            content.files.append(BackupFile(name, path.stat().st_size,
                                            open_path=functools.partial(str, path)))
    return content


def registry_xml(app: Qubes, contents: Iterable[QubeContent]) -> bytes:
    """The backup's ``qubes.xml``: the registry, with the ``backup-*`` features."""
    root = etree.fromstring(store.to_xml(app))
    included = {f"domain-{c.vm.qid}": c for c in contents}
    for domain in root.iter("domain"):
        features = domain.find("features")
        if features is None:
            features = etree.SubElement(domain, "features")
        content = included.get(domain.get("id", ""))
        values: dict[str, str] = {"backup-content": ""}
        if content is not None:
            values = {"backup-content": "1", "backup-path": content.subdir,
                      "backup-size": str(content.size)}
            for feature in list(features):
                name = feature.get("name", "")
                if name.startswith(_DROPPED_FEATURE_PREFIX) and name not in _KEPT_FEATURES:
                    features.remove(feature)
        for feature in list(features):
            if feature.get("name") in ("backup-content", "backup-path", "backup-size"):
                features.remove(feature)
        for name, value in values.items():
            etree.SubElement(features, "feature", name=name).text = value
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                pretty_print=True))


def size_to_human(size: int) -> str:
    """A size as Qubes' backup summary shows it (``12.5 MiB``)."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{round(size / scale, 1)} {unit}"
    return str(size)


_COLUMNS = (("VM", 16), ("type", 12), ("size", 12))


def _rule() -> str:
    return "".join("-" * (width + 2) + "+" for _, width in _COLUMNS) + "\n"


def summary(app: Qubes, contents: list[QubeContent]) -> str:
    """The table ``admin.backup.Info`` answers and ``qvm-backup`` shows, in Qubes' layout."""
    text = _rule() + "".join(f"{name:>{width + 1}} |" for name, width in _COLUMNS) + "\n"
    text += _rule()
    for content in contents:
        vm = content.vm
        kind = "Template VM" if type(vm).__name__ == "TemplateVM" else \
            "VM" + (" + Sys" if "root" in vm.storage.volumes
                    and vm.storage.volumes["root"].config.save_on_stop else "")
        line = (f"{vm.name:>{_COLUMNS[0][1] + 1}} |{kind:>{_COLUMNS[1][1] + 1}} |"
                f"{size_to_human(content.size):>{_COLUMNS[2][1] + 1}} |")
        if vm.power_state() != "Halted":
            line += " <-- The VM is running, backup will contain its state from before its start!"
        text += line + "\n"
    text += _rule()
    total = sum(c.size for c in contents)
    width = _COLUMNS[1][1] + 1 + 2 + _COLUMNS[2][1] + 1
    text += f"{'Total size:':>{_COLUMNS[0][1] + 1}} |{size_to_human(total):>{width}} |\n"
    text += _rule()
    chosen = {c.vm.name for c in contents}
    others = sorted(vm.name for vm in app.domains if vm.name not in chosen)
    return text + "VMs not selected for backup:\n - " + "\n - ".join(others) + "\n"
