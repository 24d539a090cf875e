"""The second phase of a restore: create the qubes from the staged files, all or none.

Qubes are created in plan order (templates first), each with its label and (mapped)
template (``admin.vm.Create.<class>``), then given its properties, features, tags,
notes, firewall rules and volume data (``admin.vm.volume.ImportWithSize``, which
resizes the volume to the image). Qube references (``netvm``, ``default_dispvm``...)
are set once every qube exists, mapped as the plan says.

A property, feature or tag the daemon refuses is a warning (the qube keeps its
default), as in Qubes; a failure that would leave the qube open or empty (its
creation, firewall, netvm, volume data) is an error. On an error or Ctrl-C, every
qube this run created is removed again, so nothing half-restored is left behind.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from septa.backup.firewall_xml import parse_rules
from septa.client.app import Qubes
from septa.client.errors import BackupRestoreError, QubesException
from septa.client.firewall import Rule
from septa.client.vm import QubesVM
from septa.tools.restore_plan import REF_PROPERTIES
from septa.tools.restore_progress import human
from septa.tools.restore_stage import FIREWALL_FILE, NOTES_FILE, StagedQube

#: properties that are not copied: given at creation, one per qube, or run-time only
SKIPPED_PROPERTIES = frozenset({
    "name", "qid", "uuid", "label", "template", "klass", "dispid", "installed_by_rpm",
    "xid", "stubdom_xid", "start_time", "icon", "updateable", "visible_ip", "visible_ip6",
    "visible_gateway", "visible_gateway6", "visible_netmask", "gateway", "gateway6", "dns",
})
#: references whose failure must not leave the qube with its default (more network)
STRICT_REFS = ("netvm",)

log = logging.getLogger("qvm-backup-restore")


@contextmanager
def _no_interrupt() -> Iterator[None]:
    """Let a clean-up finish even if Ctrl-C is pressed again."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to hold off
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def firewall_rules(data: bytes) -> list[Rule]:
    """The client rules of a backed-up ``firewall.xml``."""
    rules = []
    for values in parse_rules(data):
        rules.append(Rule(
            action=values["action"], proto=values.get("proto"),
            dst=values.get("dst4") or values.get("dst6") or values.get("dsthost"),
            dstports=values.get("dstports"), icmptype=values.get("icmptype"),
            specialtarget=values.get("specialtarget"), expire=values.get("expire"),
            comment=values.get("comment")))
    return rules


class Restorer:
    """Creates the staged qubes on the host (see the module docstring)."""

    def __init__(self, app: Qubes, staged: list[StagedQube]) -> None:
        self.app = app
        self.staged = staged
        #: names of the qubes this run created, in order
        self.created: list[str] = []
        self._creating: str | None = None
        self._refs_set: list[tuple[str, str]] = []
        self.warnings = 0

    def _warn(self, message: str) -> None:
        self.warnings += 1
        log.warning("%s", message)

    def run(self) -> None:
        """Restore every staged qube, or none."""
        try:
            for qube in self.staged:
                self._restore(qube)
            for qube in self.staged:
                self._set_refs(qube)
        except BaseException:
            self.rollback()
            raise

    def _restore(self, qube: StagedQube) -> None:
        entry = qube.entry
        log.info("-> Restoring %s...", entry.name)
        self._creating = entry.name
        try:
            vm = self.app.add_new_vm(entry.vm.klass, entry.name, entry.label, entry.template)
        except QubesException as err:
            raise BackupRestoreError(f"cannot create {entry.name}: {err}") from err
        self.created.append(entry.name)
        self._creating = None
        self._properties(qube, vm)
        self._features_and_tags(qube, vm)
        self._notes_and_firewall(qube, vm)
        self._volumes(qube, vm)

    def _properties(self, qube: StagedQube, vm: QubesVM) -> None:
        for prop, value in qube.entry.vm.properties.items():
            if prop in SKIPPED_PROPERTIES or prop in REF_PROPERTIES:
                continue
            try:
                vm.props.set(prop, value)
            except QubesException as err:
                self._warn(f"{vm.name}: property {prop}={value!r} not restored (left at its "
                           f"default): {err}")

    def _features_and_tags(self, qube: StagedQube, vm: QubesVM) -> None:
        for feature, value in qube.entry.vm.features.items():
            try:
                vm.features[feature] = value
            except QubesException as err:
                self._warn(f"{vm.name}: feature {feature}={value!r} not restored: {err}")
        present = set(vm.tags)
        for tag in qube.entry.vm.tags:
            if tag in present:
                continue
            try:
                vm.tags.add(tag)
            except QubesException as err:
                self._warn(f"{vm.name}: tag {tag} not restored: {err}")

    def _notes_and_firewall(self, qube: StagedQube, vm: QubesVM) -> None:
        notes = qube.files.get(NOTES_FILE)
        if notes is not None:
            text = notes.read_text(encoding="utf-8", errors="replace")
            try:
                vm.set_notes(text)
            except QubesException as err:
                self._warn(f"{vm.name}: notes not restored: {err}")
        firewall = qube.files.get(FIREWALL_FILE)
        if firewall is not None:
            try:
                vm.firewall.set_rules(firewall_rules(firewall.read_bytes()))
            except QubesException as err:
                raise BackupRestoreError(f"{vm.name}: cannot restore its firewall rules "
                                         f"(the qube would be left with its default, "
                                         f"allowing everything): {err}") from err

    def _volumes(self, qube: StagedQube, vm: QubesVM) -> None:
        volumes = vm.volumes
        for name, image in qube.volume_images.items():
            volume = volumes.get(name)
            if volume is None or not volume.save_on_stop:
                self._warn(f"{vm.name}: the backup has its {name} volume, which a "
                           f"{qube.entry.vm.klass} here does not keep: not restored")
                continue
            size = image.stat().st_size
            log.info("   %s volume: %s", name, human(size))
            try:
                with image.open("rb") as data:
                    volume.import_data_with_size(data, size)
            except (QubesException, OSError) as err:
                raise BackupRestoreError(f"{vm.name}: cannot restore its {name} volume: "
                                         f"{err}") from err

    def _set_refs(self, qube: StagedQube) -> None:
        vm = self.app.domains.get_blind(qube.entry.name)
        for prop, value in qube.entry.refs.items():
            try:
                vm.props.set(prop, value or None)
            except QubesException as err:
                if prop in STRICT_REFS:
                    raise BackupRestoreError(f"{vm.name}: cannot set {prop} to "
                                             f"{value or 'none'}: {err}") from err
                self._warn(f"{vm.name}: {prop}={value or 'none'} not restored (left at its "
                           f"default): {err}")
                continue
            self._refs_set.append((vm.name, prop))

    def rollback(self) -> None:
        """Remove every qube this run created (references between them first)."""
        with _no_interrupt():
            names = list(self.created)
            if self._creating is not None and self._creating not in names:
                self.app.domains.clear_cache()
                if self._creating in self.app.domains:
                    names.append(self._creating)
            if not names:
                return
            log.warning("Removing the qubes this restore created: %s", ", ".join(names))
            for name, prop in reversed(self._refs_set):
                try:
                    self.app.domains.get_blind(name).props.reset(prop)
                except QubesException as err:
                    log.debug("cannot reset %s.%s: %s", name, prop, err)
            for name in reversed(names):
                try:
                    self.app.domains.remove(name)
                except QubesException as err:
                    log.error("cannot remove %s: %s (remove it by hand: qvm-remove %s)",
                              name, err, name)
            self.created = []
