"""qubes.xml persistence: only explicit values saved, Qubes-written files load, unknowns kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from septa import paths
from septa.core import store

QUBES_43_XML = """<?xml version='1.0' encoding='UTF-8'?>
<qubes>
  <labels>
    <label id="label-1" color="0xcc0000">red</label>
    <label id="label-2" color="0xf57900">orange</label>
    <label id="label-3" color="0xedd400">yellow</label>
    <label id="label-4" color="0x73d216">green</label>
    <label id="label-5" color="0x555555">gray</label>
    <label id="label-6" color="0x3465a4">blue</label>
    <label id="label-7" color="0x75507b">purple</label>
    <label id="label-8" color="0x000000">black</label>
  </labels>
  <pools>
    <pool dir_path="/var/lib/qubes" driver="file" name="varlibqubes" revisions_to_keep="1"/>
    <pool driver="lvm_thin" name="vm-pool" thin_pool="vm-pool" volume_group="qubes_dom0"/>
  </pools>
  <properties>
    <property name="clockvm">sys-net</property>
    <property name="default_netvm">sys-firewall</property>
    <property name="default_template">debian-12-xfce</property>
    <property name="default_pool">vm-pool</property>
    <property name="updatevm">sys-firewall</property>
    <property name="default_dispvm">default-dvm</property>
    <property name="a_future_global">kept</property>
  </properties>
  <domains>
    <domain id="domain-0" class="AdminVM">
      <properties>
        <property name="label">black</property>
      </properties>
      <features>
        <feature name="gui-default-trayicon-mode">bg</feature>
      </features>
      <tags/>
    </domain>
    <domain id="domain-1" class="TemplateVM">
      <properties>
        <property name="qid">1</property>
        <property name="name">debian-12-xfce</property>
        <property name="uuid">5ad8dc6c-66a1-4e2b-8bb8-3c4b5f0e2a11</property>
        <property name="label">black</property>
        <property name="installed_by_rpm">True</property>
        <property name="memory">1024</property>
      </properties>
      <features>
        <feature name="os">Linux</feature>
        <feature name="qrexec">1</feature>
      </features>
      <tags>
        <tag name="audiovm-dom0"/>
      </tags>
      <volume-config>
        <volume name="root" pool="vm-pool" revisions_to_keep="2" rw="True"
         size="21474836480" snap_on_start="False" save_on_stop="True" source=""
         vid="qubes_dom0/vm-debian-12-xfce-root"/>
      </volume-config>
    </domain>
    <domain id="domain-2" class="AppVM">
      <properties>
        <property name="qid">2</property>
        <property name="name">sys-net</property>
        <property name="uuid">a1b2c3d4-0000-4000-8000-000000000002</property>
        <property name="label">red</property>
        <property name="provides_network">True</property>
        <property name="template">debian-12-xfce</property>
        <property name="virt_mode">hvm</property>
        <property name="a_future_vm_prop">42</property>
      </properties>
      <features/>
      <tags/>
      <devices class="pci">
        <device backend-domain="dom0" id="00_14.3" mode="required" identity="*"/>
      </devices>
    </domain>
    <domain id="domain-3" class="AppVM">
      <properties>
        <property name="qid">3</property>
        <property name="name">sys-firewall</property>
        <property name="uuid">a1b2c3d4-0000-4000-8000-000000000003</property>
        <property name="label">green</property>
        <property name="provides_network">True</property>
        <property name="netvm">sys-net</property>
        <property name="template">debian-12-xfce</property>
      </properties>
      <features/>
      <tags/>
    </domain>
    <domain id="domain-4" class="AppVM">
      <properties>
        <property name="qid">4</property>
        <property name="name">default-dvm</property>
        <property name="uuid">a1b2c3d4-0000-4000-8000-000000000004</property>
        <property name="label">red</property>
        <property name="template">debian-12-xfce</property>
        <property name="template_for_dispvms">True</property>
      </properties>
      <features>
        <feature name="appmenus-dispvm">1</feature>
      </features>
      <tags/>
    </domain>
    <domain id="domain-9" class="RemoteVM">
      <properties>
        <property name="qid">9</property>
        <property name="name">far-away</property>
      </properties>
    </domain>
  </domains>
</qubes>
"""


@pytest.fixture
def qubes_xml(septa_root: Path) -> Path:
    path = paths.current().registry
    path.parent.mkdir(parents=True)
    path.write_text(QUBES_43_XML)
    return path


def test_a_qubes_43_registry_loads(qubes_xml: Path) -> None:
    app = store.load(paths.current())
    net, fw = app.domains["sys-net"], app.domains["sys-firewall"]
    assert fw.get("netvm") is net
    assert app.get("default_netvm") is fw
    assert app.domains["debian-12-xfce"].get("memory") == 1024
    assert net.get("memory") == 1024, "inherited from the template"
    assert app.domains["debian-12-xfce"].features["os"] == "Linux"
    assert app.domains["dom0"].features["gui-default-trayicon-mode"] == "bg"
    assert app.get("default_dispvm").name == "default-dvm"


def test_unknown_elements_and_properties_survive_a_save(qubes_xml: Path) -> None:
    app = store.load(paths.current())
    app.domains["sys-firewall"].set("memory", 500)
    store.save(app)
    root = etree.parse(str(qubes_xml)).getroot()
    assert root.find("pools/pool[@name='vm-pool']") is not None
    assert root.findtext("properties/property[@name='a_future_global']") == "kept"
    net = root.find("domains/domain[@id='domain-2']")
    assert net.findtext("properties/property[@name='a_future_vm_prop']") == "42"
    assert net.find("devices[@class='pci']/device").get("id") == "00_14.3"
    tpl = root.find("domains/domain[@id='domain-1']")
    assert tpl.find("volume-config/volume").get("vid") == "qubes_dom0/vm-debian-12-xfce-root"
    assert root.find("domains/domain[@class='RemoteVM']") is not None
    fw = root.find("domains/domain[@id='domain-3']")
    assert fw.findtext("properties/property[@name='memory']") == "500"


def test_only_explicit_values_are_saved_and_reload_is_identical(septa_root: Path) -> None:
    app = store.load(paths.current())
    tpl = app.create_vm("TemplateVM", "t", "black")
    vm = app.create_vm("AppVM", "a", "red", template=tpl)
    vm.set("vcpus", 4)
    vm.features["x"] = "y"
    vm.tags.add("z")
    store.save(app)
    data = paths.current().registry.read_bytes()
    saved = etree.fromstring(data)
    names = {p.get("name") for p in saved.iterfind("domains/domain[@id='domain-2']/properties/")}
    assert names == {"name", "qid", "uuid", "label", "template", "vcpus"}
    again = store.load(paths.current())
    assert store.to_xml(again) == data


def test_a_broken_registry_is_reported_not_replaced(septa_root: Path) -> None:
    path = paths.current().registry
    path.parent.mkdir(parents=True)
    path.write_text("<qubes><domains>")
    with pytest.raises(store.RegistryFormatError, match="Cannot read"):
        store.load(paths.current())
    assert path.read_text() == "<qubes><domains>"
