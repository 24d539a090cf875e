"""What the engine needs to run one qube, independent of the registry and of libvirt."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

AGENT_PORT = "org.septa.agent.0"


@dataclass(frozen=True)
class DiskSpec:
    """One virtio-blk disk: ``target`` is the guest device name (vda, vdb ...).

    ``source_type`` is ``file`` or ``block``; ``backing`` is the qcow2 chain below
    ``path`` (nearest first) as (path, format) pairs, given to libvirt explicitly so that
    it labels every image of the chain for the unprivileged QEMU.
    """

    path: Path
    target: str
    format: str = "raw"
    readonly: bool = False
    source_type: str = "file"
    backing: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DomainSpec:
    """A qube as the hypervisor sees it."""

    name: str
    uuid: str
    memory_mib: int
    maxmem_mib: int
    vcpus: int
    kernel: Path | None
    initrd: Path | None
    cmdline: str
    disks: tuple[DiskSpec, ...]
    agent_socket: Path | None
    console_log: Path
    accel: str = "tcg"
    virt_mode: str = "pvh"
    extra_devices: tuple[str, ...] = field(default_factory=tuple)
    # spare pcie-root-ports, free for NICs hot-plugged at run time (nic.py)
    hotplug_ports: int = 0
    # MAC of a slirp NIC (libvirt ``<interface type='user'>``), or no uplink
    uplink_mac: str | None = None
