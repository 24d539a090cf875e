"""A backup's qubes.xml laid out as Qubes 4.3 writes it (labels by id, ``backup-content``
``True``, volume configs, dom0's home in the backup), for the restore tests."""

QUBES_XML = b"""<?xml version='1.0' encoding='UTF-8'?>
<qubes>
  <labels>
    <label color="0xcc0000" id="label-1">red</label>
    <label color="0x3465a4" id="label-6">blue</label>
    <label color="0x000000" id="label-8">black</label>
  </labels>
  <properties>
    <property name="default_template">fedora-41</property>
    <property name="default_netvm">sys-firewall</property>
  </properties>
  <domains>
    <domain id="domain-0" class="AdminVM">
      <properties><property name="label">label-8</property></properties>
      <features>
        <feature name="backup-content">True</feature>
        <feature name="backup-path">dom0-home/user</feature>
        <feature name="backup-size">1024</feature>
      </features>
    </domain>
    <domain id="domain-2" class="TemplateVM">
      <properties>
        <property name="label">label-8</property>
        <property name="name">fedora-41</property>
        <property name="qid">2</property>
        <property name="uuid">0e2fa953-016f-4486-9e36-c9b386fc2bac</property>
      </properties>
      <features><feature name="backup-content"></feature></features>
    </domain>
    <domain id="domain-7" class="AppVM">
      <properties>
        <property name="label">label-6</property>
        <property name="name">work</property>
        <property name="qid">7</property>
        <property name="uuid">9204481c-7e37-42a6-8a66-b4cc63d65f11</property>
        <property name="template">fedora-41</property>
        <property name="netvm">sys-firewall</property>
        <property name="default_dispvm">work-dvm</property>
        <property name="memory">800</property>
        <property name="debug">True</property>
        <property name="pcie_hotplug">True</property>
      </properties>
      <features>
        <feature name="backup-content">True</feature>
        <feature name="backup-path">vm7/</feature>
        <feature name="backup-size">20971520</feature>
        <feature name="service.cups">1</feature>
        <feature name="empty-one"></feature>
      </features>
      <devices class="pci"/>
      <tags><tag name="created-by-dom0"/><tag name="work"/></tags>
      <volume-config>
        <volume name="root" pool="lvm" revisions_to_keep="0" size="21474836480"
                snap_on_start="True" source="vm-templates/fedora-41/root" vid="x"/>
        <volume name="private" pool="lvm" revisions_to_keep="2" rw="True"
                save_on_stop="True" size="2147483648" vid="appvms/work/private"/>
        <volume name="volatile" pool="lvm" rw="True" size="10737418240" vid="y"/>
      </volume-config>
    </domain>
    <domain id="domain-8" class="AppVM">
      <properties>
        <property name="label">label-1</property>
        <property name="name">work-dvm</property>
        <property name="qid">8</property>
        <property name="template">fedora-41</property>
        <property name="template_for_dispvms">True</property>
        <property name="netvm"></property>
      </properties>
      <features>
        <feature name="backup-content">1</feature>
        <feature name="backup-path">vm8/</feature>
        <feature name="backup-size">0</feature>
      </features>
      <volume-config>
        <volume name="private" pool="lvm" rw="True" save_on_stop="True" size="2147483648"/>
      </volume-config>
    </domain>
    <domain id="domain-9" class="StandaloneVM">
      <properties>
        <property name="label">red</property>
        <property name="name">sys-vpn</property>
        <property name="qid">9</property>
        <property name="provides_network">True</property>
      </properties>
      <features>
        <feature name="backup-content">True</feature>
        <feature name="backup-path">vm9/</feature>
        <feature name="backup-size">4096</feature>
      </features>
      <volume-config>
        <volume name="root" pool="lvm" rw="True" save_on_stop="True" size="10737418240"/>
        <volume name="private" pool="lvm" rw="True" save_on_stop="True" size="2147483648"/>
      </volume-config>
    </domain>
    <domain id="domain-10" class="DispVM">
      <properties>
        <property name="label">label-1</property>
        <property name="name">disp-print</property>
        <property name="qid">10</property>
        <property name="template">work-dvm</property>
        <property name="netvm">sys-vpn</property>
      </properties>
      <features>
        <feature name="backup-content">True</feature>
        <feature name="backup-path">vm10/</feature>
      </features>
    </domain>
  </domains>
</qubes>
"""

