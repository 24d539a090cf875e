"""What the agent asks of the guest system: its name, its uptime, a clean poweroff, a log."""

from __future__ import annotations

import os
import sys


def log(message: str) -> None:
    """One line to stderr (the journal under systemd). ``logging`` costs boot time."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def hostname() -> str:
    """The guest's host name."""
    return os.uname().nodename


def adopt_qube_name(cmdline: str = "/proc/cmdline",
                    target: str = "/proc/sys/kernel/hostname") -> str | None:
    """Take the host name from ``septa.qube=<name>`` on the kernel command line (dom0 puts
    the qube's name there, as Qubes names each qube's host after it). Returns the name."""
    try:
        with open(cmdline, encoding="ascii", errors="replace") as f:
            words = f.read().split()
    except OSError:
        return None
    for word in words:
        if word.startswith("septa.qube="):
            name = word[len("septa.qube="):]
            if name and len(name) <= 31 and all(c.isalnum() or c in "_.-" for c in name):
                try:
                    with open(target, "w", encoding="ascii") as f:
                        f.write(name)
                except OSError as exc:
                    log(f"cannot set the host name: {exc}")
                    return None
                return name
    return None


def uptime() -> float:
    """Seconds since the guest kernel started (``/proc/uptime``), or -1 if unknown."""
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


def normal_priority() -> None:
    """Drop the boot-time priority (the unit starts the agent with ``Nice=-15`` so that it
    is READY early while the qube boots); its later children must not inherit it."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError as exc:
        log(f"cannot reset the agent's priority: {exc}")


def systemd_is_init() -> bool:
    """Whether systemd runs as PID 1 (the test of ``sd_booted``)."""
    return os.path.isdir("/run/systemd/system")


#: Made by ``septa-boot-complete.service`` once the qube has booted (basic.target and the
#: private volume); /run is a tmpfs, so the file is new every boot.
BOOT_COMPLETE = "/run/septa/boot-complete"


def boot_complete() -> bool:
    """Whether the qube has finished booting (always, when systemd is not PID 1)."""
    return os.path.exists(BOOT_COMPLETE) or not systemd_is_init()


def poweroff() -> None:
    """Power the guest off: cleanly through systemd, or at once when systemd is not PID 1."""
    import subprocess

    command = ["systemctl", "poweroff"] if systemd_is_init() else ["poweroff", "-f"]
    log("powering off: " + " ".join(command))
    try:
        subprocess.run(command, check=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"{' '.join(command)} failed: {exc}; forcing poweroff")
        subprocess.run(["poweroff", "-f"], check=False, stdin=subprocess.DEVNULL)
