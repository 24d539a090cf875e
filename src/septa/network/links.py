"""How a link between a client qube and its netvm is named on both ends.

A link is one point-to-point segment: the client's NIC (QEMU listens on the link's unix
socket) and, in the netvm, one NIC per client (QEMU connects to that socket). Every name
derives from the client's qid, so septad can find a link again after a restart.
"""

from __future__ import annotations

from pathlib import Path

#: Id of a client's NIC towards its netvm (see :mod:`septa.hypervisor.nic`).
CLIENT_NIC = "net0"
#: Largest qid a link name can carry (three bytes of a MAC address).
MAX_QID = 0xFFFFFF


def _check(qid: int) -> int:
    if not 0 <= qid <= MAX_QID:
        raise ValueError(f"qid {qid} does not fit a link name")
    return qid


def _mac(prefix: str, qid: int) -> str:
    value = _check(qid)
    return f"{prefix}:{value >> 16:02x}:{(value >> 8) & 0xFF:02x}:{value & 0xFF:02x}"


def backend_nic(client_qid: int) -> str:
    """Id, in the netvm, of the NIC that serves client ``client_qid``."""
    return f"vif{_check(client_qid)}"


def backend_interface(client_qid: int) -> str:
    """The name the netvm's agent gives that NIC (at most 15 characters, as Linux wants)."""
    return f"vif{_check(client_qid)}"


def backend_mac(client_qid: int) -> str:
    """MAC of the netvm's NIC for a client: unique within the netvm, locally administered."""
    return _mac("fe:ff:ff", client_qid)


def uplink_mac(qid: int) -> str:
    """MAC of a qube's slirp uplink NIC."""
    return _mac("52:54:00", qid)


def link_socket(directory: Path, client_qid: int) -> Path:
    """The unix socket of a client's link (short: sockets paths have a 108-byte limit)."""
    return directory / f"{_check(client_qid)}.sock"
