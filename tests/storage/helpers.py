"""Helpers for storage tests: write and read a volume's data the way a qube would see it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from septa.storage.model import BlockDevice

MiB = 1 << 20


def write(device: BlockDevice | Path, offset: int, length: int, byte: int,
          fmt: str = "raw") -> None:
    """Write ``length`` bytes of value ``byte`` at ``offset``, through qcow2 if it is one."""
    path, fmt = (Path(device.path), device.format) if isinstance(device, BlockDevice) \
        else (device, fmt)
    if fmt == "qcow2":
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {byte:#x} {offset} {length}",
                        str(path)], check=True, capture_output=True)
        return
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(bytes([byte]) * length)


def read(device: BlockDevice | Path, tmp: Path, fmt: str = "raw") -> bytes:
    """The whole content as a qube sees it (a qcow2 chain is flattened with qemu-img)."""
    path, fmt = (Path(device.path), device.format) if isinstance(device, BlockDevice) \
        else (device, fmt)
    if fmt == "qcow2":
        out = tmp / "flat.raw"
        out.unlink(missing_ok=True)
        subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", str(path),
                        str(out)], check=True, capture_output=True)
        data = out.read_bytes()
        out.unlink()
        return data
    return path.read_bytes()


def byte_at(data: bytes, offset: int) -> int:
    return data[offset]


def filled(data: bytes, offset: int, length: int, byte: int) -> bool:
    return data[offset:offset + length] == bytes([byte]) * length
