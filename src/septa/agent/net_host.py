"""What the network services ask of the guest: commands, files under /sys, /proc, /run, /etc.

Everything goes through one :class:`Host`, so unit tests replace the command runner, the
paths, the clock and the resolver, and check the exact ``ip`` / ``nft`` invocations.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .system import systemd_is_init


class NetError(Exception):
    """A request that cannot be carried out; the message is the one-line reason."""


@dataclass(frozen=True)
class Completed:
    """How a command ended."""

    returncode: int
    stdout: str = ""
    stderr: str = ""


class Runner(Protocol):
    """Runs ``argv`` (``input`` on its stdin) and reports how it ended."""

    def __call__(self, argv: list[str], input: str | None = None) -> Completed: ...


def run_process(argv: list[str], input: str | None = None) -> Completed:
    """The real runner."""
    try:
        done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=120,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return Completed(127, "", str(exc))
    return Completed(done.returncode, done.stdout, done.stderr)


def resolve_ipv4(host: str) -> list[str]:
    """All the IPv4 addresses of ``host`` (``getaddrinfo``; /etc/hosts, then DNS)."""
    try:
        found = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return [str(entry[4][0]) for entry in found]


#: Where dom0's ``service.NAME`` features become flag files (Qubes' path).
SERVICE_FLAGS_DIR = "/run/qubes-service"
#: The target whose units are the optional services, each conditioned on its flag.
SERVICES_TARGET = "septa-services.target"


@dataclass
class Host:
    """The guest as the network services see it."""

    run: Runner = run_process
    sys_net: str = "/sys/class/net"
    proc_sys: str = "/proc/sys"
    resolv_conf: str = "/etc/resolv.conf"
    state_dir: str = "/run/septa/net"
    services_dir: str = SERVICE_FLAGS_DIR
    #: where the build enabled the optional units
    wants_dir: str = f"/etc/systemd/system/{SERVICES_TARGET}.wants"
    resolver: Callable[[str], list[str]] = resolve_ipv4
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    systemd: Callable[[], bool] = systemd_is_init
    warnings: list[str] = field(default_factory=list)

    def must(self, argv: list[str], input: str | None = None) -> str:
        """Run ``argv``; its stdout, or :class:`NetError` with its first error line."""
        done = self.run(argv, input)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            reason = lines[0].strip() if lines else f"exit status {done.returncode}"
            raise NetError(f"{' '.join(argv[:4])}: {reason}")
        return done.stdout

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def write_sysctl(self, name: str, value: str) -> None:
        """Set ``name`` (``net.ipv4.ip_forward``) through /proc/sys."""
        path = os.path.join(self.proc_sys, *name.split("."))
        try:
            with open(path, "w", encoding="ascii") as out:
                out.write(value + "\n")
        except OSError as exc:
            raise NetError(f"cannot set {name}: {exc.strerror}") from None


def write_atomically(path: str, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` (write a temporary file, rename it). A bind-mounted
    file (``ip netns exec``, containers) cannot be renamed over: it is rewritten in place."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f".{name}.septa-tmp")
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fchmod(out.fileno(), mode)
        os.fsync(out.fileno())
    try:
        os.replace(temporary, path)
    except OSError:
        os.unlink(temporary)
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
