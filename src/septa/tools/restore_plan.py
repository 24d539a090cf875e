"""What a restore will do with each qube of a backup: the restore plan.

From the backup's registry (:mod:`septa.backup.registry_xml`), what the host has
(:class:`HostView`) and the user's choices (:class:`Choices`), :func:`make_plan` decides
for each qube in the backup whether it is restored, under which name, on which
template, and with which qubes in its ``netvm``, ``default_dispvm`` and other qube
properties, as Qubes' restore does:

- a name that exists on the host is never overwritten: the qube is refused (the
  default), skipped (``skip_conflicting``) or renamed with a number appended
  (``rename_conflicting``);
- a template, netvm or default disposable template is taken from the backup when it is
  restored in the same run (under its new name), else from the host when the host has a
  suitable qube of that name; otherwise the template becomes the host's default
  template (``default_dispvm`` for a disposable), and the netvm or default_dispvm the
  host's default, each mapping said in the plan. With ``skip_broken`` a qube whose
  template or netvm is missing is skipped instead.

The plan lists qubes in the order they must be created: templates, then disposable
templates, then the others, disposables last.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from septa.backup.registry_xml import BackupQube, BackupRegistry, true_value

#: qube-reference properties that are mapped, not copied (``template`` is apart)
REF_PROPERTIES = ("netvm", "default_dispvm", "guivm", "audiovm", "management_dispvm")
MAX_NAME = 31


class Problem(enum.Enum):
    """Why a qube of the backup is not restored; the text is Qubes' summary remark."""

    EXCLUDED = "Excluded from restore"
    ALREADY_EXISTS = "A VM with the same name already exists on the host!"
    MISSING_TEMPLATE = "No matching template on the host or in the backup found!"
    MISSING_NETVM = "No matching netvm on the host or in the backup found!"


@dataclass
class HostView:
    """What the plan needs to know of the host: its qubes' classes, which of them serve
    network or are disposable templates, the global defaults and the label names."""

    classes: dict[str, str]
    networked: set[str] = field(default_factory=set)
    dvm_templates: set[str] = field(default_factory=set)
    default_template: str | None = None
    default_netvm: str | None = None
    default_dispvm: str | None = None
    labels: list[str] = field(default_factory=lambda: ["red"])


@dataclass
class Choices:
    """The user's options."""

    only: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    rename_conflicting: bool = False
    skip_conflicting: bool = False
    skip_broken: bool = False
    verify_only: bool = False


@dataclass
class QubeRestore:
    """One qube of the backup and what the restore does with it."""

    vm: BackupQube
    name: str
    label: str
    template: str | None = None
    #: values for REF_PROPERTIES, by property ("" for none); absent: left at the default
    refs: dict[str, str] = field(default_factory=dict)
    problem: Problem | None = None
    #: changes of name and label, for the summary ("Will be renamed to 'work1'")
    name_remarks: list[str] = field(default_factory=list)
    #: changes of template and other qubes it refers to, for the summary
    ref_remarks: list[str] = field(default_factory=list)

    @property
    def good(self) -> bool:
        """Whether the qube is restored."""
        return self.problem is None

    @property
    def remarks(self) -> list[str]:
        """Everything that changes on the way."""
        return self.name_remarks + self.ref_remarks


def restore_order(vm: BackupQube) -> int:
    """Templates first, then disposable templates, then the others, disposables last."""
    if vm.klass == "TemplateVM":
        return 0
    if vm.klass == "DispVM":
        return 3
    return 1 if true_value(vm.prop("template_for_dispvms")) else 2


def _new_name(name: str, taken: set[str]) -> str | None:
    """Qubes' scheme: the name (cut to 29 characters) with 1, 2... appended."""
    base = name[:MAX_NAME - 2]
    for number in range(1, 100):
        candidate = f"{base}{number}"
        if candidate not in taken:
            return candidate
    return None


class _Planner:
    def __init__(self, registry: BackupRegistry, host: HostView, choices: Choices) -> None:
        self.host = host
        self.choices = choices
        chosen = sorted(registry.included(), key=restore_order)
        self.entries = {vm.name: QubeRestore(vm, vm.name, vm.label) for vm in chosen}

    def _restored(self, name: str | None) -> QubeRestore | None:
        entry = self.entries.get(name or "")
        return entry if entry is not None and entry.good else None

    def names(self) -> None:
        """Exclusions, name conflicts and labels: what does not depend on other qubes."""
        taken = set(self.host.classes) | set(self.entries)
        for entry in self.entries.values():
            name = entry.vm.name
            excluded = name in self.choices.exclude or (
                self.choices.only and name not in self.choices.only)
            if excluded:
                entry.problem = Problem.EXCLUDED
            elif name in self.host.classes and not self.choices.verify_only:
                new = _new_name(name, taken) if self.choices.rename_conflicting else None
                if new is None:
                    entry.problem = Problem.ALREADY_EXISTS
                else:
                    entry.name = new
                    taken.add(new)
                    entry.name_remarks.append(f"Will be renamed to '{new}'")
            if entry.label not in self.host.labels and self.host.labels:
                entry.name_remarks.append(f"Label '{entry.label}' missing, using "
                                     f"'{self.host.labels[0]}'")
                entry.label = self.host.labels[0]

    def _suits_template(self, entry: QubeRestore, name: str) -> str | None:
        """The name to use for template *name* of *entry*, if the backup or the host
        has a suitable one."""
        disposable = entry.vm.klass == "DispVM"
        restored = self._restored(name)
        if restored is not None:
            ok = (true_value(restored.vm.prop("template_for_dispvms")) if disposable
                  else restored.vm.klass == "TemplateVM")
            if ok:
                return restored.name
        if disposable:
            return name if name in self.host.dvm_templates else None
        return name if self.host.classes.get(name) == "TemplateVM" else None

    def template(self, entry: QubeRestore) -> None:
        wanted = entry.vm.template
        entry.template = None
        if wanted is None:
            return
        found = self._suits_template(entry, wanted)
        if found is not None:
            entry.template = found
            if found != wanted:
                entry.ref_remarks.append(f"Template change to '{found}'")
            return
        disposable = entry.vm.klass == "DispVM"
        default = self.host.default_dispvm if disposable else self.host.default_template
        if self.choices.skip_broken or default is None:
            entry.problem = Problem.MISSING_TEMPLATE
            return
        entry.template = default
        entry.ref_remarks.append(f"Template '{wanted}' missing, using default '{default}'")

    def _ref(self, entry: QubeRestore, prop: str, wanted: str) -> str | None:
        """The host name for qube *wanted* in property *prop*, or None if missing."""
        restored = self._restored(wanted)
        if prop == "netvm":
            if restored is not None and true_value(restored.vm.prop("provides_network")):
                return restored.name
            return wanted if wanted in self.host.networked else None
        if prop == "default_dispvm":
            if restored is not None and true_value(restored.vm.prop("template_for_dispvms")):
                return restored.name
            return wanted if wanted in self.host.dvm_templates else None
        if restored is not None:
            return restored.name
        return wanted if wanted in self.host.classes else None

    def refs(self, entry: QubeRestore) -> None:
        entry.refs = {}
        for prop in REF_PROPERTIES:
            wanted = entry.vm.prop(prop)
            if wanted is None:
                continue
            if wanted == "":
                entry.refs[prop] = ""
                continue
            found = self._ref(entry, prop, wanted)
            if found is not None:
                entry.refs[prop] = found
                if found != wanted:
                    entry.ref_remarks.append(f"{prop} change to '{found}'")
                continue
            if prop == "netvm" and self.choices.skip_broken:
                entry.problem = Problem.MISSING_NETVM
                return
            default = {"netvm": self.host.default_netvm,
                       "default_dispvm": self.host.default_dispvm}.get(prop)
            what = f"default '{default}'" if default else (
                "default (none)" if prop in ("netvm", "default_dispvm") else "its default")
            entry.ref_remarks.append(f"{prop} '{wanted}' missing, using {what}")

    def plan(self) -> list[QubeRestore]:
        self.names()
        while True:
            before = [entry.problem for entry in self.entries.values()]
            for entry in self.entries.values():
                if entry.problem in (Problem.MISSING_TEMPLATE, Problem.MISSING_NETVM):
                    entry.problem = None
                if entry.problem is None:
                    entry.ref_remarks = []
                    self.template(entry)
                if entry.problem is None:
                    self.refs(entry)
            if [entry.problem for entry in self.entries.values()] == before:
                return list(self.entries.values())


def make_plan(registry: BackupRegistry, host: HostView, choices: Choices) -> list[QubeRestore]:
    """The plan for every qube the backup holds, in creation order."""
    return _Planner(registry, host, choices).plan()


def unknown_names(registry: BackupRegistry, names: Iterable[str]) -> list[str]:
    """Those of *names* that are no qube of the backup."""
    held = {vm.name for vm in registry.included()}
    return [name for name in names if name not in held]


def conflicts(plan: list[QubeRestore]) -> list[QubeRestore]:
    """The qubes refused because their name exists on the host."""
    return [e for e in plan if e.problem is Problem.ALREADY_EXISTS]


def to_restore(plan: list[QubeRestore]) -> list[QubeRestore]:
    """The qubes that will be restored, in creation order."""
    return [e for e in plan if e.good]
