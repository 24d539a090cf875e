"""Where Septa keeps its state: the Qubes default paths, or all of them under ``SEPTA_ROOT``.

Every component (daemon, tools, tests) asks this module for a path, so that setting
``SEPTA_ROOT=DIR`` relocates the registry, sockets, pools, policy and runtime files
under DIR and several isolated instances can run side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """The set of filesystem locations one Septa instance uses."""

    root: Path

    def _at(self, default: str) -> Path:
        return self.root / default.lstrip("/")

    @property
    def qubes_base(self) -> Path:
        return self._at("/var/lib/qubes")

    @property
    def registry(self) -> Path:
        return self.qubes_base / "qubes.xml"

    @property
    def registry_lock(self) -> Path:
        return self.qubes_base / "qubes.xml.lock"

    @property
    def run_dir(self) -> Path:
        return self._at("/var/run")

    @property
    def admin_socket(self) -> Path:
        return self.run_dir / "qubesd.sock"

    @property
    def internal_socket(self) -> Path:
        return self.run_dir / "qubesd.internal.sock"

    @property
    def misc_socket(self) -> Path:
        return self.run_dir / "qubesd.misc.sock"

    @property
    def runtime_dir(self) -> Path:
        """Per-boot files of running qubes (Qubes' ``/run/qubes``)."""
        return self._at("/run/qubes")

    @property
    def qrexec_socket(self) -> Path:
        """septad's socket for calls from dom0 into qubes (``qrexec-client``, ``qvm-run``)."""
        return self.runtime_dir / "qrexec.sock"

    @property
    def policy_agent_socket(self) -> Path:
        """septad's socket where prompt agents (``septa-policy-agent``) answer "ask" rules."""
        return self.runtime_dir / "policy-agent.sock"

    @property
    def policy_dir(self) -> Path:
        return self._at("/etc/qubes/policy.d")

    @property
    def rpc_dir(self) -> Path:
        """dom0's qrexec services (``/etc/qubes-rpc``)."""
        return self._at("/etc/qubes-rpc")

    @property
    def legacy_policy_dir(self) -> Path:
        return self._at("/etc/qubes-rpc/policy")

    @property
    def backup_profiles_dir(self) -> Path:
        return self._at("/etc/qubes/backup")

    @property
    def log_dir(self) -> Path:
        return self._at("/var/log/qubes")


def cache_dir() -> Path:
    """Host-wide cache of derived artefacts (template builds, the KVM probe result):
    ``$SEPTA_CACHE``, else /var/cache/septa. Shared by instances: it holds no state."""
    return Path(os.environ.get("SEPTA_CACHE", "/var/cache/septa"))


def current() -> Paths:
    """The paths of this process: under ``$SEPTA_ROOT`` when it is set, else the real ones."""
    root = os.environ.get("SEPTA_ROOT")
    return Paths(Path(root) if root else Path("/"))
