"""libvirt domain XML for a qube: q35, direct kernel boot (pvh/pv) or firmware (hvm),
virtio-blk volumes, the agent's virtio-serial channel, a logged virtio console, spare
PCIe root ports for hot-plugged NICs and an optional slirp uplink NIC.

Measured with libvirt 9.0 / QEMU 7.2: libvirt puts every device without an address on a
declared ``pcie-root-port`` first and adds ports only when they run out; with no declared
port it adds one spare. So ``hotplug_ports`` spare ports are declared on top of the
devices that use one. ``<interface type='user'>`` becomes QEMU's ``-netdev user``
(slirp): DHCP gives the guest 10.0.2.15/24, gateway 10.0.2.2, DNS 10.0.2.3."""

from __future__ import annotations

from lxml import etree

from septa.hypervisor.spec import AGENT_PORT, DiskSpec, DomainSpec

TCG_TB_CACHE_MIB = 128
# PCI devices of every domain that libvirt puts on a root port of its own: the
# virtio-serial controller, the rng and the USB controller libvirt adds to q35 machines
FIXED_PCIE_DEVICES = 3


def _sub(parent: etree._Element, tag: str, text: str | None = None,
         **attrs: str) -> etree._Element:
    node = etree.SubElement(parent, tag, attrs)
    if text is not None:
        node.text = text
    return node


def domain_xml(spec: DomainSpec) -> str:
    kvm = spec.accel == "kvm"
    dom = etree.Element("domain", type="kvm" if kvm else "qemu")
    _sub(dom, "name", spec.name)
    _sub(dom, "uuid", spec.uuid)
    # no balloon yet (qmemman's job): the qube gets its initial memory, maxmem is unused
    _sub(dom, "memory", str(spec.memory_mib), unit="MiB")
    _sub(dom, "currentMemory", str(spec.memory_mib), unit="MiB")
    _sub(dom, "vcpu", str(spec.vcpus))
    os_node = _sub(dom, "os")
    _sub(os_node, "type", "hvm", arch="x86_64", machine="q35")
    if spec.kernel is not None and spec.virt_mode != "hvm":
        _sub(os_node, "kernel", str(spec.kernel))
        if spec.initrd is not None:
            _sub(os_node, "initrd", str(spec.initrd))
        _sub(os_node, "cmdline", spec.cmdline)
    else:
        _sub(os_node, "boot", dev="hd")
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if not kvm:
        # QEMU's default TCG translation cache is 1 GiB (about 300 MiB of it resident in
        # an idle qube); 128 MiB keeps a qube's host memory close to its guest memory.
        _sub(_sub(features, "tcg"), "tb-cache", str(TCG_TB_CACHE_MIB), unit="MiB")
    if kvm:
        cpu = _sub(dom, "cpu", mode="host-passthrough", check="none")
        _sub(cpu, "feature", policy="disable", name="arch-capabilities")
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "destroy")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    for disk in spec.disks:
        devices.append(_disk(disk))
    _sub(devices, "controller", type="virtio-serial", index="0")
    channel = _sub(devices, "channel", type="unix")
    if spec.agent_socket is None:
        _sub(channel, "source", mode="bind")
    else:
        _sub(channel, "source", mode="bind", path=str(spec.agent_socket))
    _sub(channel, "target", type="virtio", name=AGENT_PORT)
    console = _sub(devices, "console", type="pty")
    _sub(console, "log", file=str(spec.console_log), append="on")
    _sub(console, "target", type="virtio", port="0")
    _sub(devices, "memballoon", model="none")
    if spec.uplink_mac is not None:
        uplink = _sub(devices, "interface", type="user")
        _sub(uplink, "mac", address=spec.uplink_mac)
        _sub(uplink, "model", type="virtio")
    if spec.hotplug_ports:
        _sub(devices, "controller", type="pci", index="0", model="pcie-root")
        # libvirt places devices without an address on the declared ports first
        placed = FIXED_PCIE_DEVICES + len(spec.disks) + (spec.uplink_mac is not None)
        for _ in range(placed + spec.hotplug_ports):
            _sub(devices, "controller", type="pci", model="pcie-root-port")
    _sub(devices, "rng", model="virtio").append(_backend_random())
    return etree.tostring(dom, pretty_print=True, encoding="unicode")


def _disk(disk: DiskSpec) -> etree._Element:
    attr = "dev" if disk.source_type == "block" else "file"
    node = etree.Element("disk", type=disk.source_type, device="disk")
    _sub(node, "driver", name="qemu", type=disk.format, cache="writeback", discard="unmap")
    _sub(node, "source", **{attr: str(disk.path)})
    parent = node
    for path, fmt in disk.backing:
        store = _sub(parent, "backingStore", type="file")
        _sub(store, "format", type=fmt)
        _sub(store, "source", file=path)
        parent = store
    if disk.format == "qcow2" or disk.backing:
        _sub(parent, "backingStore")
    _sub(node, "target", dev=disk.target, bus="virtio")
    if disk.readonly:
        _sub(node, "readonly")
    return node


def _backend_random() -> etree._Element:
    backend = etree.Element("backend", model="random")
    backend.text = "/dev/urandom"
    return backend
