"""Cloning a qube: create a new one like it, copy its settings, then its persistent volumes.

The order follows Qubes' ``clone_vm``: create (same class, template, label, and the
source's non-default pools), copy non-default properties, tags, features, notes and
firewall rules, then clone each ``save_on_stop`` volume. If a step fails the half-made
clone is removed, unless ``ignore_errors`` asks to only log failures of the metadata
steps (volume failures always abort).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from .app import Qubes
from .errors import QubesException, QubesNoSuchPropertyError, QubesValueError
from .vm import QubesVM

#: Properties that ``admin.vm.Create`` already sets, or that are unique per qube.
SKIPPED_PROPERTIES = frozenset({"name", "qid", "template", "label", "uuid", "installed_by_rpm"})
#: Tags that record who created a qube; the clone gets its own.
SKIPPED_TAG_PREFIX = "created-by-"

log = logging.getLogger("app")


def _template_of(vm: QubesVM) -> str | None:
    try:
        value = vm.prop("template")
    except QubesNoSuchPropertyError:
        return None
    return None if value.is_none else value.text


def _pools_of(app: Qubes, src: QubesVM, ignore_volumes: Collection[str]) -> dict[str, str]:
    """The pools of the source's own volumes that differ from the global defaults."""
    pools: dict[str, str] = {}
    for volume in sorted(src.volumes.values()):
        if volume.snap_on_start or not volume.rw or volume.name in ignore_volumes:
            continue
        default = app.global_default_pool(volume.name) or volume.pool
        if default != volume.pool:
            pools[volume.name] = volume.pool
    return pools


def _copy_features(src: QubesVM, dst: QubesVM, ignore_errors: bool) -> None:
    for name, value in src.features.items():
        if name.startswith("preload-dispvm") and name != "preload-dispvm-max":
            continue
        try:
            dst.features[name] = value
        except QubesException as e:
            logging.getLogger(dst.name).error("Failed to set %s feature: %s", name, e)
            if not ignore_errors:
                raise


def _copy_metadata(src: QubesVM, dst: QubesVM, ignore_errors: bool) -> None:
    dst_log = logging.getLogger(dst.name)
    for name, value in src.props.fetch_all().items():
        if name in SKIPPED_PROPERTIES or value.is_default or not value.has_value:
            continue
        try:
            dst.props.set(name, value.text)
        except QubesException as e:
            dst_log.error("Failed to set %s property: %s", name, e)
            if not ignore_errors:
                raise
    for tag in src.tags:
        if tag.startswith(SKIPPED_TAG_PREFIX):
            continue
        try:
            dst.tags.add(tag)
        except QubesException as e:
            dst_log.error("Failed to add %s tag: %s", tag, e)
            if not ignore_errors:
                raise
    _copy_features(src, dst, ignore_errors)
    try:
        notes = src.get_notes()
        if notes:
            dst.set_notes(notes)
    except QubesException as e:
        dst_log.error("Failed to clone qube notes: %s", e)
        if not ignore_errors:
            raise
    try:
        dst.firewall.set_rules(src.firewall.get_rules())
    except QubesException as e:
        log.error("Failed to set firewall: %s", e)
        if not ignore_errors:
            raise


def _copy_volumes(src: QubesVM, dst: QubesVM, ignore_volumes: Collection[str]) -> None:
    for volume in sorted(dst.volumes.values()):
        if not volume.save_on_stop or volume.name in ignore_volumes:
            continue
        source = src.volumes.get(volume.name)
        if source is None:
            raise QubesException("%s has no %s volume to clone", src.name, volume.name)
        logging.getLogger(dst.name).info("Cloning %s volume", volume.name)
        volume.clone_from(source)


def _remove_quietly(app: Qubes, name: str) -> None:
    try:
        app.domains.remove(name)
    except QubesException as e:
        log.error("Failed to remove the incomplete clone %s: %s", name, e)


def clone_vm(
    app: Qubes,
    src: QubesVM | str,
    new_name: str,
    new_cls: str | None = None,
    *,
    pool: str | None = None,
    pools: Mapping[str, str] | None = None,
    ignore_errors: bool = False,
    ignore_volumes: Collection[str] = (),
) -> QubesVM:
    """Create ``new_name`` as a copy of ``src`` and return it."""
    if pool and pools:
        raise QubesValueError("only one of pool= and pools= can be used")
    if isinstance(src, str):
        src = app.domains[src]
    cls = new_cls or src.klass
    template = _template_of(src)
    label = src.prop("label").text
    if not pool and not pools:
        pools = _pools_of(app, src, ignore_volumes) or None
    dst = app.add_new_vm(cls, new_name, label, template, pool=pool, pools=pools)
    try:
        _copy_metadata(src, dst, ignore_errors)
    except QubesException:
        _remove_quietly(app, dst.name)
        raise
    try:
        _copy_volumes(src, dst, ignore_volumes)
    except QubesException:
        _remove_quietly(app, dst.name)
        raise
    return dst
