"""A qube's ``firewall.xml`` from a backup (Qubes 4.x layout, version 2), read as rules.

Each ``<rule>`` is a list of ``<property name="KEY">VALUE</property>``; a rule comes back
as a dict of its keys and values, in file order. Checking and normalising the values
(e.g. an address in ``dsthost``) is left to whoever sets the rules.
"""

from __future__ import annotations

from septa.backup.errors import BackupFormatError
from septa.backup.registry_xml import parse_document


def parse_rules(data: bytes) -> list[dict[str, str]]:
    """The rules of a ``firewall.xml``, first match first."""
    root = parse_document(data, "firewall.xml", "firewall")
    rules = []
    for node in root.iterfind("rules/rule"):
        rule: dict[str, str] = {}
        for prop in node.iterfind("properties/property"):
            name = prop.get("name")
            if name:
                rule[name] = (prop.text or "").strip()
        if "action" not in rule:
            raise BackupFormatError("firewall.xml: a rule has no action")
        rules.append(rule)
    return rules
