"""What the restore plan needs to know of the host, asked through the Admin API: the
qubes and their classes, which of the qubes a backup refers to serve network or are
disposable templates, the global defaults and the labels."""

from __future__ import annotations

from septa.backup.registry_xml import BackupRegistry
from septa.client.app import Qubes
from septa.client.errors import QubesException
from septa.client.vm import QubesVM
from septa.tools.restore_plan import REF_PROPERTIES, HostView


def _flag(vm: QubesVM, prop: str) -> bool:
    try:
        value = vm.props.get(prop)
    except QubesException:
        return False
    return value.has_value and value.text == "True"


def _global(app: Qubes, prop: str) -> str | None:
    try:
        value = app.props.get(prop)
    except QubesException:
        return None
    return value.text or None


def host_view(app: Qubes, registry: BackupRegistry) -> HostView:
    """The host as the plan for *registry* sees it."""
    classes = {vm.name: vm.klass for vm in app.domains}
    referenced: set[str] = set()
    for qube in registry.included():
        referenced.update(name for name in (qube.template,
                                            *(qube.prop(p) for p in REF_PROPERTIES)) if name)
    view = HostView(classes=classes,
                    default_template=_global(app, "default_template"),
                    default_netvm=_global(app, "default_netvm"),
                    default_dispvm=_global(app, "default_dispvm"),
                    labels=app.labels.names())
    for name in sorted(referenced & set(classes)):
        if classes[name] == "AdminVM":
            continue
        vm = app.domains.get_blind(name)
        if _flag(vm, "provides_network"):
            view.networked.add(name)
        if _flag(vm, "template_for_dispvms"):
            view.dvm_templates.add(name)
    return view
