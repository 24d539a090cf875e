"""The directory of link sockets: QEMU (an unprivileged user under libvirt) creates and
connects to the unix sockets of qube-to-qube links there; no other user may.

QEMU's user is libvirt's ``user =`` setting in ``qemu.conf`` (a name or ``+UID``), else
``libvirt-qemu`` (Debian's build default) when that account exists, else root. The
directory is mode 0700 and owned by that user; root (septad) reaches it regardless.
Its parents must be traversable by that user (``/run/qubes``, or the test roots under
``/var/tmp`` with mode 0755).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
from collections.abc import Callable
from pathlib import Path

from septa.paths import Paths

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
DEFAULT_QEMU_USER = "libvirt-qemu"
_SETTING = re.compile(r'^\s*(user|group)\s*=\s*"([^"]*)"\s*$')


def _conf_settings(conf: Path) -> dict[str, str]:
    try:
        text = conf.read_text()
    except OSError:
        return {}
    settings: dict[str, str] = {}
    for line in text.splitlines():
        match = _SETTING.match(line)
        if match:
            settings[match.group(1)] = match.group(2)
    return settings


def _numeric(name: str, lookup: Callable[[str], int]) -> int | None:
    """A ``qemu.conf`` user or group: ``+NUMBER`` or a name known to the system."""
    if name.startswith("+") and name[1:].isdigit():
        return int(name[1:])
    try:
        return lookup(name)
    except KeyError:
        return None


def _uid(name: str) -> int | None:
    return _numeric(name, lambda n: pwd.getpwnam(n).pw_uid)


def _gid(name: str) -> int | None:
    return _numeric(name, lambda n: grp.getgrnam(n).gr_gid)


def qemu_ids(conf: Path = QEMU_CONF) -> tuple[int, int]:
    """(uid, gid) that libvirt runs QEMU as."""
    settings = _conf_settings(conf)
    uid = _uid(settings["user"]) if "user" in settings else _uid(DEFAULT_QEMU_USER)
    if uid is None:
        uid = 0
    gid = _gid(settings["group"]) if "group" in settings else None
    if gid is None:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = 0
    return uid, gid


def link_socket_dir(root: Path, conf: Path = QEMU_CONF) -> Path:
    """``<runtime dir>/links``, created or repaired: a real directory, 0700, QEMU's."""
    path = Paths(root).runtime_dir / "links"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(f"{path} is not a directory")
    uid, gid = qemu_ids(conf)
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path
