"""The libvirt XML of a qube: boot, disks with their qcow2 chain, agent channel, accel."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from septa.hypervisor.domain_xml import FIXED_PCIE_DEVICES, TCG_TB_CACHE_MIB, domain_xml
from septa.hypervisor.spec import AGENT_PORT, DiskSpec, DomainSpec


def spec(**changes: object) -> DomainSpec:
    values: dict[str, object] = dict(
        name="septa-1234abcd-work", uuid="5ad8dc6c-66a1-4e2b-8bb8-3c4b5f0e2a11",
        memory_mib=400, maxmem_mib=4000, vcpus=2, kernel=Path("/k/vmlinuz"),
        initrd=Path("/k/initramfs"), cmdline="root=/dev/vda rw septa.qube=work",
        disks=(DiskSpec(Path("/q/root-cow.qcow2"), "vda", "qcow2", False, "file",
                        (("/q/base/2.img", "qcow2"), ("/q/base/1.img", "raw"))),
               DiskSpec(Path("/dev/vg/vm-work-private"), "vdb", "raw", False, "block")),
        agent_socket=None, console_log=Path("/log/console-work.log"))
    values.update(changes)
    return DomainSpec(**values)  # type: ignore[arg-type]


def parse(text: str) -> etree._Element:
    return etree.fromstring(text.encode())


def test_tcg_qube_boots_its_kernel_with_bounded_translation_cache() -> None:
    dom = parse(domain_xml(spec()))
    assert dom.get("type") == "qemu"
    assert dom.findtext("os/kernel") == "/k/vmlinuz"
    assert dom.findtext("os/cmdline") == "root=/dev/vda rw septa.qube=work"
    assert dom.find("os/type").get("machine") == "q35"
    assert dom.findtext("memory") == "400"
    assert dom.findtext("features/tcg/tb-cache") == str(TCG_TB_CACHE_MIB)
    assert dom.find("cpu") is None


def test_kvm_uses_the_host_cpu_without_arch_capabilities() -> None:
    dom = parse(domain_xml(spec(accel="kvm")))
    assert dom.get("type") == "kvm"
    assert dom.find("cpu").get("mode") == "host-passthrough"
    assert dom.find("cpu/feature[@name='arch-capabilities']").get("policy") == "disable"
    assert dom.find("features/tcg") is None


def test_disks_chain_and_agent_channel() -> None:
    dom = parse(domain_xml(spec()))
    root, private = dom.findall("devices/disk")
    assert root.find("source").get("file") == "/q/root-cow.qcow2"
    chain = [store.find("source").get("file") for store in root.iter("backingStore")
             if store.find("source") is not None]
    assert chain == ["/q/base/2.img", "/q/base/1.img"]
    assert root.find("target").get("dev") == "vda" and root.find("target").get("bus") == "virtio"
    assert private.get("type") == "block"
    assert private.find("source").get("dev") == "/dev/vg/vm-work-private"
    channel = dom.find("devices/channel")
    assert channel.find("target").get("name") == AGENT_PORT
    assert channel.find("source").get("path") is None, "libvirt picks the socket path"
    assert dom.find("devices/console/log").get("file") == "/log/console-work.log"


def test_hvm_boots_from_its_disk() -> None:
    dom = parse(domain_xml(spec(virt_mode="hvm")))
    assert dom.find("os/kernel") is None
    assert dom.find("os/boot").get("dev") == "hd"


def test_no_spare_ports_or_uplink_by_default() -> None:
    dom = parse(domain_xml(spec()))
    assert dom.find("devices/controller[@type='pci']") is None
    assert dom.find("devices/interface") is None


def test_spare_root_ports_count_the_devices_libvirt_places_on_them() -> None:
    dom = parse(domain_xml(spec(hotplug_ports=16)))
    root = dom.findall("devices/controller[@model='pcie-root']")
    assert [c.get("index") for c in root] == ["0"]
    ports = dom.findall("devices/controller[@model='pcie-root-port']")
    # 2 disks + virtio-serial + rng + usb sit on ports too; the rest stay free
    assert len(ports) == 16 + 2 + FIXED_PCIE_DEVICES
    assert all(port.get("index") is None for port in ports), "libvirt numbers them"


def test_slirp_uplink_is_a_virtio_user_interface_with_its_mac() -> None:
    dom = parse(domain_xml(spec(uplink_mac="52:54:00:5e:6c:01", hotplug_ports=2)))
    (uplink,) = dom.findall("devices/interface")
    assert uplink.get("type") == "user"
    assert uplink.find("mac").get("address") == "52:54:00:5e:6c:01"
    assert uplink.find("model").get("type") == "virtio"
    ports = dom.findall("devices/controller[@model='pcie-root-port']")
    assert len(ports) == 2 + 2 + FIXED_PCIE_DEVICES + 1
