"""The table ``qvm-backup-restore`` shows before restoring, in Qubes' layout: one line per
qube of the backup (name, type, template, netvm, label as the backup has them) and, at
the end of the line, what happens to it (``<-- ...``)."""

from __future__ import annotations

from collections.abc import Callable

from septa.backup.registry_xml import BackupQube
from septa.tools.restore_plan import QubeRestore

_COLUMNS: tuple[tuple[str, Callable[[BackupQube], str]], ...] = (
    ("name", lambda vm: vm.name),
    ("type", lambda vm: vm.klass),
    ("template", lambda vm: vm.template or "n/a"),
    ("netvm", lambda vm: "(default)" if vm.prop("netvm") is None else vm.prop("netvm") or "-"),
    ("label", lambda vm: vm.label),
)


def summary(plan: list[QubeRestore]) -> str:
    """The summary table of *plan*."""
    widths = [max([len(title), *(len(get(e.vm)) for e in plan)]) for title, get in _COLUMNS]
    rule = "".join("-" * (width + 2) + "+" for width in widths)
    header = "".join(f"{title:>{width + 1}} |" for (title, _), width in zip(_COLUMNS, widths,
                                                                             strict=True))
    lines = ["The following VMs are included in the backup:", "", rule, header, rule]
    for entry in plan:
        line = "".join(f"{get(entry.vm):>{width + 1}} |"
                       for (_, get), width in zip(_COLUMNS, widths, strict=True))
        remarks = [entry.problem.value] if entry.problem is not None else entry.remarks
        lines.append(line + "".join(f" <-- {remark}" for remark in remarks))
    return "\n".join(lines) + "\n"
