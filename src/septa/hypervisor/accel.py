"""KVM or TCG: decided by a real test boot of the guest kernel, cached per kernel and QEMU.

``/dev/kvm`` existing proves nothing (a paravirtualised KVM may fail to run stock
kernels), so the kernel is booted once under KVM with no root device: reaching the
root-mount panic shows the guest ran. If it does not get there in time, qubes use TCG.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path

from septa.paths import cache_dir

log = logging.getLogger(__name__)
QEMU = "qemu-system-x86_64"
PROBE_TIMEOUT = 45.0
_MARKERS = (b"Kernel panic", b"VFS: Unable to mount root", b"end Kernel panic")


def _qemu_version() -> str:
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def _kernel_id(kernel: Path) -> str:
    digest = hashlib.sha256()
    with open(kernel, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def probe_kvm(kernel: Path, timeout: float = PROBE_TIMEOUT) -> bool:
    """Boot ``kernel`` under KVM with no root device; True if it gets to the root panic."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory(prefix="septa-kvm-probe-") as tmp:
        serial = Path(tmp) / "serial.log"
        command = [
            QEMU, "-machine", "q35,accel=kvm", "-cpu", "host,-arch-capabilities",
            "-m", "256", "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", f"file:{serial}", "-kernel", str(kernel),
            "-append", "console=ttyS0 panic=-1 root=/dev/septa-none rootwait=0",
        ]
        try:
            subprocess.run(command, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            log.info("KVM probe: the kernel did not finish booting in %.0f s", timeout)
        except OSError as exc:
            log.info("KVM probe could not run QEMU: %s", exc)
            return False
        text = serial.read_bytes() if serial.exists() else b""
    return any(marker in text for marker in _MARKERS)


def choose_accel(kernel: Path) -> str:
    """``kvm`` or ``tcg`` for this kernel; ``$SEPTA_ACCEL`` forces one (for debugging)."""
    forced = os.environ.get("SEPTA_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    key = f"{_qemu_version()}|{_kernel_id(kernel)}"
    cache = cache_dir() / "accel.json"
    try:
        known: dict[str, str] = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = "kvm" if probe_kvm(kernel) else "tcg"
        log.info("accelerator for this kernel: %s", known[key])
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(cache)
    return known[key]
