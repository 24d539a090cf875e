"""The ``qubes.xml`` inside a backup, read for restoring: which qubes the backup holds,
and for each its class, label, template, properties, features, tags and volumes.

Qubes 4.x and Septa both write the whole registry there and mark the qubes whose files
are in the backup with the feature ``backup-content`` (Septa writes ``1`` or empty,
Qubes ``True`` or ``1``), with ``backup-path`` (the folder of their files in the
backup: ``vm3/``, or ``appvms/work`` in early 4.0 backups) and ``backup-size``.
Labels are named by name or by their ``label-N`` id, qube references by name (as text
or, in older files, in a ``ref`` attribute). An empty property means None.

Knows nothing of the host: the restore tool decides what to do with what is here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from septa.backup.errors import BackupFormatError
from septa.backup.outer_tar import valid_name

#: features that describe the backup itself, not the qube
BACKUP_FEATURES = ("backup-content", "backup-path", "backup-size")
_FALSE = ("", "0", "false", "no", "none")


def true_value(text: str | None) -> bool:
    """Whether a property or feature value means true (``True``, ``1``...)."""
    return (text or "").strip().lower() not in _FALSE


@dataclass(frozen=True)
class VolumeConfig:
    """One ``<volume>`` of a qube's ``volume-config``."""

    name: str
    pool: str | None = None
    size: int | None = None
    save_on_stop: bool = False
    snap_on_start: bool = False
    rw: bool = False


@dataclass
class BackupQube:
    """A qube as the backup's registry describes it.

    ``properties`` holds every property but ``name``, ``label``, ``qid``, ``uuid`` and
    ``template`` (which have their own attributes); ``features`` lacks the backup ones.
    """

    name: str
    klass: str
    label: str
    qid: int | None = None
    template: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    features: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    volumes: dict[str, VolumeConfig] = field(default_factory=dict)
    backup_path: str | None = None
    backup_size: int = 0

    @property
    def included(self) -> bool:
        """Whether the qube's files are in the backup."""
        return self.backup_path is not None

    @property
    def saved_volumes(self) -> list[str]:
        """Names of the volumes whose data a backup holds (``save_on_stop``)."""
        return [name for name, volume in self.volumes.items() if volume.save_on_stop]

    def prop(self, name: str) -> str | None:
        """A property's value as written (None when it is not set, "" for None)."""
        return self.properties.get(name)


@dataclass
class BackupRegistry:
    """The parsed ``qubes.xml`` of a backup."""

    #: label name by its ``label-N`` id, plus each name to itself
    labels: dict[str, str] = field(default_factory=dict)
    #: global properties (default_template, default_netvm...)
    properties: dict[str, str] = field(default_factory=dict)
    #: every qube, dom0 included, in file order, by name
    domains: dict[str, BackupQube] = field(default_factory=dict)

    def included(self) -> list[BackupQube]:
        """The qubes whose files are in the backup (dom0's home left out)."""
        return [vm for vm in self.domains.values() if vm.included and vm.klass != "AdminVM"]

    @property
    def dom0_home(self) -> str | None:
        """The backup folder of dom0's home, when the backup has it (Qubes only)."""
        dom0 = next((vm for vm in self.domains.values() if vm.klass == "AdminVM"), None)
        return dom0.backup_path if dom0 is not None else None


def _text(node: Any) -> str:
    return str(node.get("ref") or node.text or "").strip()


def _int(text: str | None, what: str) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise BackupFormatError(f"qubes.xml in the backup: {what} is not a number: "
                                f"{text!r}") from None


def _volume(node: Any, qube: str) -> VolumeConfig:
    name = node.get("name") or ""
    if not name:
        raise BackupFormatError(f"qubes.xml in the backup: a volume of {qube} has no name")
    return VolumeConfig(name=name, pool=node.get("pool"),
                        size=_int(node.get("size"), f"the size of {qube}:{name}"),
                        save_on_stop=true_value(node.get("save_on_stop")),
                        snap_on_start=true_value(node.get("snap_on_start")),
                        rw=true_value(node.get("rw")))


def _backup_path(text: str, qube: str) -> str:
    path = text.strip().strip("/")
    if not valid_name(path):
        raise BackupFormatError(f"qubes.xml in the backup: invalid backup-path {text!r} of "
                                f"{qube}")
    return path + "/"


def _domain(node: Any, labels: dict[str, str]) -> BackupQube:
    klass = node.get("class") or ""
    props = {p.get("name"): _text(p) for p in node.iterfind("properties/property")
             if p.get("name")}
    name = "dom0" if klass == "AdminVM" else props.pop("name", "")
    if not name or not klass:
        raise BackupFormatError(f"qubes.xml in the backup: domain {node.get('id')!r} has no "
                                f"name or class")
    label_ref = props.pop("label", "")
    qid = props.pop("qid", None)
    props.pop("uuid", None)
    features = {f.get("name"): (f.text or "") for f in node.iterfind("features/feature")
                if f.get("name")}
    qube = BackupQube(
        name=name, klass=klass, label=labels.get(label_ref, label_ref),
        qid=_int(qid, f"the qid of {name}") if klass != "AdminVM" else 0,
        template=props.pop("template", None) or None,
        properties=props,
        features={k: v for k, v in features.items() if k not in BACKUP_FEATURES},
        tags=[t.get("name") for t in node.iterfind("tags/tag") if t.get("name")],
        volumes={v.name: v for v in (_volume(n, name)
                                     for n in node.iterfind("volume-config/volume"))})
    if true_value(features.get("backup-content")):
        path = features.get("backup-path") or ""
        qube.backup_path = _backup_path(path, name) if path else None
        qube.backup_size = _int(features.get("backup-size"), f"the backup-size of {name}") or 0
    return qube


def parse_document(data: bytes, what: str, root_tag: str) -> Any:
    """The root element of an XML file from a backup (no entities, no network), which
    must be ``<root_tag>``; :class:`BackupFormatError` names ``what`` otherwise."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as err:
        raise BackupFormatError(f"{what} is not valid XML: {err}") from None
    if root.tag != root_tag:
        raise BackupFormatError(f"{what}: the root element is not <{root_tag}>")
    return root


def parse(data: bytes) -> BackupRegistry:
    """Parse the backup's ``qubes.xml``; :class:`BackupFormatError` says what is wrong."""
    root = parse_document(data, "qubes.xml in the backup", "qubes")
    registry = BackupRegistry()
    for node in root.iterfind("labels/label"):
        if node.text:
            registry.labels[node.get("id") or node.text.strip()] = node.text.strip()
            registry.labels[node.text.strip()] = node.text.strip()
    registry.properties = {str(p.get("name")): _text(p)
                           for p in root.iterfind("properties/property") if p.get("name")}
    for node in root.iterfind("domains/domain"):
        qube = _domain(node, registry.labels)
        if qube.name in registry.domains:
            raise BackupFormatError(f"qubes.xml in the backup names {qube.name} twice")
        registry.domains[qube.name] = qube
    paths = [vm.backup_path for vm in registry.domains.values() if vm.backup_path]
    for path in paths:
        if any(other != path and other.startswith(path) for other in paths) \
                or paths.count(path) > 1:
            raise BackupFormatError(f"qubes.xml in the backup: backup-path {path} is shared "
                                    f"by several qubes")
    return registry
