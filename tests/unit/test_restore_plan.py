"""Restore without VMs: the backup's qubes.xml (ours and Qubes 4.3's), its firewall.xml,
and the restore plan (conflicts, renames, skips, template/netvm/default_dispvm mapping)
with its summary table."""

from __future__ import annotations

import pytest

from septa import paths
from septa.backup import BackupFormatError, registry_xml
from septa.backup.firewall_xml import parse_rules
from septa.core import store
from septa.core.backup_content import QubeContent
from septa.core.backup_content import registry_xml as backup_registry_xml
from septa.tools.restore_apply import firewall_rules
from septa.tools.restore_plan import Choices, HostView, Problem, make_plan, to_restore
from septa.tools.restore_summary import summary
from tests.backup.qubes_registry import QUBES_XML
from tests.realclient import CLIENT_DIR


@pytest.fixture
def backup() -> registry_xml.BackupRegistry:
    return registry_xml.parse(QUBES_XML)


def host(**kwargs: object) -> HostView:
    values: dict[str, object] = {
        "classes": {"dom0": "AdminVM", "debian-12": "TemplateVM", "sys-net": "AppVM",
                    "sys-firewall": "AppVM", "default-dvm": "AppVM"},
        "networked": {"sys-net", "sys-firewall"}, "dvm_templates": {"default-dvm"},
        "default_template": "debian-12", "default_netvm": "sys-firewall",
        "default_dispvm": "default-dvm", "labels": ["red", "orange", "blue", "black"]}
    values.update(kwargs)
    return HostView(**values)  # type: ignore[arg-type]


def by_name(plan: list) -> dict:  # type: ignore[type-arg]
    return {entry.vm.name: entry for entry in plan}


def test_qubes_43_layout_is_read(backup: registry_xml.BackupRegistry) -> None:
    assert [vm.name for vm in backup.included()] == ["work", "work-dvm", "sys-vpn",
                                                     "disp-print"]
    assert backup.dom0_home == "dom0-home/user/"
    assert backup.properties["default_template"] == "fedora-41"
    work = backup.domains["work"]
    assert (work.klass, work.label, work.qid, work.template) == ("AppVM", "blue", 7, "fedora-41")
    assert work.backup_path == "vm7/" and work.backup_size == 20971520
    assert work.properties == {"netvm": "sys-firewall", "default_dispvm": "work-dvm",
                               "memory": "800", "debug": "True", "pcie_hotplug": "True"}
    assert work.features == {"service.cups": "1", "empty-one": ""}
    assert work.tags == ["created-by-dom0", "work"]
    assert work.saved_volumes == ["private"]
    assert work.volumes["private"].size == 2147483648 and work.volumes["root"].snap_on_start
    assert backup.domains["sys-vpn"].label == "red"
    assert backup.domains["sys-vpn"].saved_volumes == ["root", "private"]
    assert backup.domains["work-dvm"].prop("netvm") == ""
    assert not backup.domains["fedora-41"].included
    assert backup.domains["disp-print"].backup_size == 0


def test_our_backup_registry_is_read() -> None:
    app = store.load(paths.current())
    tpl = app.create_vm("TemplateVM", "debian-12", "black")
    app.set("default_template", tpl)
    net = app.create_vm("AppVM", "sys-net", "red", properties={"provides_network": "True"})
    work = app.create_vm("AppVM", "work", "blue", properties={"vcpus": "3"})
    work.set("netvm", net)
    work.features["service.cups"] = "1"
    work.tags.add("project")
    app.create_vm("AppVM", "vault", "black", properties={"netvm": ""})
    parsed = registry_xml.parse(backup_registry_xml(app, [QubeContent(tpl),
                                                          QubeContent(work)]))
    assert [vm.name for vm in parsed.included()] == ["debian-12", "work"]
    qube = parsed.domains["work"]
    assert qube.backup_path == f"vm{work.qid}/" and qube.template == "debian-12"
    assert qube.properties == {"netvm": "sys-net", "vcpus": "3"}
    assert qube.features == {"service.cups": "1"} and "project" in qube.tags
    assert qube.saved_volumes == ["private"] and qube.label == "blue"
    assert sorted(parsed.domains["debian-12"].saved_volumes) == ["private", "root"]
    assert parsed.domains["vault"].prop("netvm") == "" and not parsed.domains["vault"].included
    assert parsed.dom0_home is None


@pytest.mark.skipif(not (CLIENT_DIR / "qubesadmin/tests/backup/v4-qubes.xml").exists(),
                    reason="the Qubes 4.3 admin client is not installed")
def test_qubes_own_test_registry_is_read() -> None:
    parsed = registry_xml.parse((CLIENT_DIR / "qubesadmin/tests/backup/v4-qubes.xml")
                                .read_bytes())
    names = [vm.name for vm in parsed.included()]
    assert "test-work" in names and "test-d8test" in names and "debian-8" not in names
    assert parsed.domains["test-d8test"].backup_path == "appvms/test-d8test/"
    assert parsed.domains["test-d8test"].label == "gray"


@pytest.mark.parametrize(("data", "message"), [
    (b"<qubes><domains", "not valid XML"),
    (b"<firewall/>", "root element"),
    (b"<qubes><domains><domain class='AppVM'><properties/></domain></domains></qubes>",
     "no name"),
    (b"<qubes><domains><domain class='AppVM'><properties><property name='name'>a"
     b"</property></properties><features><feature name='backup-content'>1</feature>"
     b"<feature name='backup-path'>../etc</feature></features></domain></domains></qubes>",
     "invalid backup-path"),
    (b"<!DOCTYPE q [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><qubes><domains><domain "
     b"class='AppVM'><properties><property name='name'>&e;</property></properties>"
     b"</domain></domains></qubes>", "no name"),
])
def test_bad_registries_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(BackupFormatError, match=message):
        registry_xml.parse(data)


def test_firewall_rules_from_qubes_layout() -> None:
    data = b"""<firewall version="2"><rules>
      <rule><properties><property name="action">accept</property>
        <property name="specialtarget">dns</property></properties></rule>
      <rule><properties><property name="action">accept</property>
        <property name="dsthost">192.168.0.0/24</property>
        <property name="proto">tcp</property><property name="dstports">443</property>
        <property name="comment">lan web</property></properties></rule>
      <rule><properties><property name="action">drop</property></properties></rule>
    </rules></firewall>"""
    assert parse_rules(data)[1] == {"action": "accept", "dsthost": "192.168.0.0/24",
                                    "proto": "tcp", "dstports": "443", "comment": "lan web"}
    assert [rule.to_wire() for rule in firewall_rules(data)] == [
        "action=accept specialtarget=dns",
        "action=accept proto=tcp dst4=192.168.0.0/24 dstports=443-443 comment=lan web",
        "action=drop"]
    with pytest.raises(BackupFormatError, match="no action"):
        parse_rules(b"<firewall><rules><rule><properties/></rule></rules></firewall>")


def test_everything_restored_with_mapped_dependencies(
        backup: registry_xml.BackupRegistry) -> None:
    plan = make_plan(backup, host(), Choices())
    assert [e.vm.name for e in plan] == ["work-dvm", "work", "sys-vpn", "disp-print"]
    entries = by_name(plan)
    work = entries["work"]
    assert work.good and work.name == "work" and work.template == "debian-12"
    assert work.refs == {"netvm": "sys-firewall", "default_dispvm": "work-dvm"}
    assert work.remarks == ["Template 'fedora-41' missing, using default 'debian-12'"]
    assert entries["work-dvm"].refs == {"netvm": ""}
    assert entries["sys-vpn"].template is None and entries["sys-vpn"].refs == {}
    disp = entries["disp-print"]
    assert disp.template == "work-dvm" and disp.refs == {"netvm": "sys-vpn"}
    assert disp.remarks == []


def test_missing_netvm_and_dispvm_fall_back_to_the_defaults(
        backup: registry_xml.BackupRegistry) -> None:
    plan = by_name(make_plan(backup, host(classes={"dom0": "AdminVM", "debian-12":
                                                   "TemplateVM"}, networked=set(),
                                          default_netvm=None),
                             Choices(exclude=["work-dvm"])))
    work = plan["work"]
    assert work.good and work.refs == {}
    assert work.remarks == ["Template 'fedora-41' missing, using default 'debian-12'",
                            "netvm 'sys-firewall' missing, using default (none)",
                            "default_dispvm 'work-dvm' missing, using default 'default-dvm'"]
    assert plan["work-dvm"].problem is Problem.EXCLUDED
    assert plan["disp-print"].template == "default-dvm"
    assert plan["disp-print"].remarks[0] == \
        "Template 'work-dvm' missing, using default 'default-dvm'"


def test_skip_broken_skips_and_chains(backup: registry_xml.BackupRegistry) -> None:
    plan = by_name(make_plan(backup, host(), Choices(skip_broken=True)))
    assert plan["work"].problem is Problem.MISSING_TEMPLATE
    assert plan["work-dvm"].problem is Problem.MISSING_TEMPLATE
    assert plan["sys-vpn"].good
    assert plan["disp-print"].problem is Problem.MISSING_TEMPLATE
    no_default = by_name(make_plan(backup, host(default_template=None), Choices()))
    assert no_default["work"].problem is Problem.MISSING_TEMPLATE
    assert no_default["sys-vpn"].good
    only_vpn_missing = by_name(make_plan(backup, host(classes={
        "dom0": "AdminVM", "fedora-41": "TemplateVM", "sys-firewall": "AppVM"},
        networked={"sys-firewall"}), Choices(skip_broken=True, exclude=["sys-vpn"])))
    assert only_vpn_missing["work"].good
    assert only_vpn_missing["disp-print"].problem is Problem.MISSING_NETVM


def test_conflicts_refused_skipped_or_renamed(backup: registry_xml.BackupRegistry) -> None:
    classes = {"dom0": "AdminVM", "debian-12": "TemplateVM", "work": "AppVM",
               "work-dvm": "AppVM", "work-dvm1": "AppVM"}
    refused = by_name(make_plan(backup, host(classes=classes), Choices()))
    assert refused["work"].problem is Problem.ALREADY_EXISTS
    assert refused["work-dvm"].problem is Problem.ALREADY_EXISTS
    assert refused["sys-vpn"].good
    skipped = by_name(make_plan(backup, host(classes=classes, dvm_templates={"work-dvm"}),
                                Choices(skip_conflicting=True)))
    assert skipped["disp-print"].template == "work-dvm", "the host's work-dvm is used"
    renamed = by_name(make_plan(backup, host(classes=classes), Choices(
        rename_conflicting=True)))
    assert renamed["work-dvm"].name == "work-dvm2" and renamed["work"].name == "work1"
    assert renamed["work"].refs["default_dispvm"] == "work-dvm2"
    assert renamed["disp-print"].template == "work-dvm2"
    assert "Will be renamed to 'work1'" in renamed["work"].remarks
    assert "default_dispvm change to 'work-dvm2'" in renamed["work"].remarks
    verify = by_name(make_plan(backup, host(classes=classes), Choices(verify_only=True)))
    assert verify["work"].good and verify["work"].name == "work"


def test_selection_and_missing_labels(backup: registry_xml.BackupRegistry) -> None:
    plan = make_plan(backup, host(labels=["green", "red"]), Choices(only=["work", "sys-vpn"]))
    assert [e.vm.name for e in to_restore(plan)] == ["work", "sys-vpn"]
    entries = by_name(plan)
    assert entries["work-dvm"].problem is Problem.EXCLUDED
    assert entries["work"].label == "green"
    assert "Label 'blue' missing, using 'green'" in entries["work"].remarks
    assert "default_dispvm" not in entries["work"].refs
    assert "default_dispvm 'work-dvm' missing, using default 'default-dvm'" in \
        entries["work"].remarks


def test_summary_has_qubes_layout(backup: registry_xml.BackupRegistry) -> None:
    plan = make_plan(backup, host(classes={"dom0": "AdminVM", "debian-12": "TemplateVM",
                                           "sys-vpn": "StandaloneVM"},
                                  networked=set(), default_netvm=None),
                     Choices(exclude=["disp-print"]))
    lines = summary(plan).splitlines()
    assert lines[:2] == ["The following VMs are included in the backup:", ""]
    assert lines[2] == lines[4] == "------------+--------------+-----------+--------------+-------+"
    assert lines[3] == "       name |         type |  template |        netvm | label |"
    assert lines[5] == ("   work-dvm |        AppVM | fedora-41 |            - |   red |"
                        " <-- Template 'fedora-41' missing, using default 'debian-12'")
    assert lines[6] == ("       work |        AppVM | fedora-41 | sys-firewall |  blue |"
                        " <-- Template 'fedora-41' missing, using default 'debian-12'"
                        " <-- netvm 'sys-firewall' missing, using default (none)")
    assert lines[7] == ("    sys-vpn | StandaloneVM |       n/a |    (default) |   red |"
                        " <-- A VM with the same name already exists on the host!")
    assert lines[8].endswith(" <-- Excluded from restore")
    assert len(lines) == 9
