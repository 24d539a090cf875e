"""Loading and saving the registry in the Qubes ``qubes.xml`` layout, atomically.

Only explicitly set property values are written, as Qubes does. Elements and
properties this version does not know (pools, volume-config, devices, a property of a
newer release, a domain of an unknown class) are kept as they were and written back.
A save writes a temporary file, fsyncs it and renames it over the old one under an
exclusive lock, so a crash at any moment leaves the old or the new file, never a mix.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lxml import etree

from septa.core.app import DOM0_UUID, Qubes
from septa.core.errors import QubesException
from septa.core.labels import Label
from septa.core.properties import PropertyHolder, serialize
from septa.core.vm import VM_CLASSES, AdminVM, BaseVM
from septa.paths import Paths
from septa.storage import Pool, default_pools

log = logging.getLogger(__name__)


class RegistryFormatError(QubesException):
    """The registry file cannot be read."""


@contextlib.contextmanager
def registry_lock(paths: Paths) -> Iterator[None]:
    paths.registry_lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.registry_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load(paths: Paths) -> Qubes:
    """The registry at ``paths``; a new one (dom0, default labels) if there is no file yet."""
    app = Qubes(paths)
    with registry_lock(paths):
        for stale in paths.registry.parent.glob(f".{paths.registry.name}.*.tmp"):
            stale.unlink()
        if not paths.registry.exists():
            app.setup_defaults()
            _write(app)
            return app
        try:
            tree = etree.parse(str(paths.registry), etree.XMLParser(resolve_entities=False,
                                                                     no_network=True))
        except (etree.XMLSyntaxError, OSError) as exc:
            raise RegistryFormatError(f"Cannot read {paths.registry}: {exc}") from exc
    _from_xml(app, tree.getroot())
    return app


def _from_xml(app: Qubes, root: Any) -> None:
    if root.tag != "qubes":
        raise RegistryFormatError("The registry's root element is not <qubes>")
    for node in root.iterchildren(tag=etree.Element):
        if node.tag == "labels":
            for lab in node.iterchildren("label"):
                index = int(str(lab.get("id", "label-0")).removeprefix("label-"))
                app.labels.add(Label(index, lab.get("color", "0x000000"), (lab.text or "").strip()))
        elif node.tag == "pools":
            _load_pools(app, node)
        elif node.tag not in ("properties", "domains"):
            app.unknown_xml.append(node)
    if not app.pools:
        for pool in default_pools(app.paths):
            pool.setup()
            app.pools[pool.name] = pool
    if not len(app.labels):
        app.labels.add_defaults()
    domains = root.find("domains")
    pending: list[tuple[BaseVM, Any]] = []
    for node in domains.iterchildren("domain") if domains is not None else ():
        cls = VM_CLASSES.get(node.get("class", ""))
        if cls is None:
            log.warning("keeping a domain of unknown class %s as it is", node.get("class"))
            app.unknown_xml.append(node)
            continue
        props = {p.get("name"): p.get("ref") or p.text or ""
                 for p in node.findall("properties/property")}
        if cls is AdminVM:
            props.update(name="dom0", qid="0", uuid=props.get("uuid") or DOM0_UUID)
        try:
            vm = cls(app, props.get("name", ""), int(props.get("qid", "-1")),
                     props.get("uuid", ""))
        except (QubesException, ValueError) as exc:
            raise RegistryFormatError(
                f"Invalid domain {node.get('id')} in {app.paths.registry}: {exc}") from exc
        if "label" in props:
            vm.load_value("label", app.labels[props["label"]])
        app.add_vm(vm)
        pending.append((vm, node))
    app.ensure_dom0()
    _load_properties(app, root)
    for vm, node in pending:
        _load_properties(vm, node)
        for feature in node.findall("features/feature"):
            vm.features.load(feature.get("name"), feature.text or "")
        for tag in node.findall("tags/tag"):
            vm.tags.load(tag.get("name"))
        vm.unknown_xml = [child for child in node.iterchildren(tag=etree.Element)
                          if child.tag not in ("properties", "features", "tags",
                                               "volume-config")]
        config = node.find("volume-config")
        if config is not None:
            vm.storage.load_xml(config)
        notes = vm.dir_path / "notes.txt"
        if notes.exists():
            vm.notes = notes.read_text(encoding="utf-8", errors="replace")


def _load_pools(app: Qubes, node: Any) -> None:
    """Pools with a driver we have become pool objects; the others are kept as written."""
    kept = etree.Element("pools")
    for element in node.iterchildren("pool"):
        try:
            pool = Pool.from_xml(element)
        except QubesException as exc:
            log.warning("keeping pool %s as it is: %s", element.get("name"), exc)
            kept.append(element)
            continue
        app.pools[pool.name] = pool
    if len(kept):
        app.unknown_xml.append(kept)


def _pools_xml(app: Qubes) -> Any:
    node = etree.Element("pools")
    for name in sorted(app.pools):
        node.append(app.pools[name].to_xml())
    for unknown in app.unknown_xml:
        if unknown.tag == "pools":
            for element in unknown:
                node.append(copy.deepcopy(element))
    return node


def _load_properties(holder: PropertyHolder, node: Any) -> None:
    unknown: list[Any] = []
    for element in node.findall("properties/property"):
        name = element.get("name")
        text = element.get("ref") or element.text or ""
        if name in ("name", "qid", "uuid", "label") and isinstance(holder, BaseVM):
            continue
        if name not in holder.property_defs or holder.property_defs[name].read_only:
            unknown.append(element)
            continue
        try:
            holder.load_value(name, holder.parse(name, text))
        except QubesException as exc:
            log.warning("keeping unreadable property %s=%r of %s: %s", name, text, holder, exc)
            unknown.append(element)
    holder.__dict__["unknown_properties"] = unknown


def _properties_xml(holder: PropertyHolder) -> Any:
    element = etree.Element("properties")
    for name, value in sorted(holder.explicit_values().items()):
        child = etree.SubElement(element, "property", name=name)
        child.text = serialize(value)
    for unknown in holder.__dict__.get("unknown_properties", []):
        if unknown.get("name") not in holder.explicit_values():
            element.append(copy.deepcopy(unknown))
    return element


def _domain_xml(vm: BaseVM) -> Any:
    node = etree.Element("domain", id=f"domain-{vm.qid}")
    node.set("class", type(vm).__name__)
    node.append(_properties_xml(vm))
    features = etree.SubElement(node, "features")
    for name, value in vm.features.items():
        etree.SubElement(features, "feature", name=name).text = value
    tags = etree.SubElement(node, "tags")
    for tag in vm.tags:
        etree.SubElement(tags, "tag", name=tag)
    if vm.storage.configs:
        node.append(vm.storage.to_xml())
    for unknown in vm.unknown_xml:
        node.append(copy.deepcopy(unknown))
    return node


def _domain_bytes(vm: BaseVM) -> bytes:
    """The serialised ``<domain>``, cached until the qube fires its next event."""
    key = (vm.revision, len(vm.unknown_xml))
    cached = vm.__dict__.get("_xml_cache")
    if cached is not None and cached[0] == key:
        return bytes(cached[1])
    data = etree.tostring(_domain_xml(vm), encoding="UTF-8", pretty_print=True)
    vm.__dict__["_xml_cache"] = (key, data)
    return bytes(data)


def to_xml(app: Qubes) -> bytes:
    root = etree.Element("qubes")
    labels = etree.SubElement(root, "labels")
    for label in app.labels:
        node = etree.SubElement(labels, "label", id=f"label-{label.index}", color=label.color)
        node.text = label.name
    root.append(_pools_xml(app))
    for unknown in app.unknown_xml:
        if unknown.tag not in ("domain", "pools"):
            root.append(copy.deepcopy(unknown))
    root.append(_properties_xml(app))
    etree.SubElement(root, "domains").text = "@DOMAINS@"
    head, _, tail = etree.tostring(
        root, xml_declaration=True, encoding="UTF-8", pretty_print=True).partition(b"@DOMAINS@")
    parts = [head, b"\n"]
    parts += [_domain_bytes(vm) for vm in app.domains]
    parts += [etree.tostring(unknown, encoding="UTF-8", pretty_print=True)
              for unknown in app.unknown_xml if unknown.tag == "domain"]
    parts.append(tail)
    return b"".join(parts)


def save(app: Qubes) -> None:
    with registry_lock(app.paths):
        _write(app)


def _write(app: Qubes) -> None:
    target: Path = app.paths.registry
    target.parent.mkdir(parents=True, exist_ok=True)
    data = to_xml(app)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o660), "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
