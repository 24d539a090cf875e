"""Backup profiles: the YAML files of ``/etc/qubes/backup/<name>.conf`` that
``admin.backup.Info`` and ``admin.backup.Execute`` name, in Qubes' format::

    include: [work, personal]     # null: every qube with include_in_backups
    exclude: [sys-net]
    destination_vm: dom0          # or a qube (the backup goes through qubes.Backup)
    destination_path: /backups    # a directory (a new file in it), a file, or for a
                                  # qube its qubes.Backup argument
    passphrase_text: secret       # or passphrase_vm: vault (qubes.BackupPassphrase)
    compression: true             # or a filter command name, e.g. gzip

Qube names may use ``@tag:X``/``@type:X``/``@anyvm`` (``$`` as in 4.0 is read too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from septa.core.errors import QubesException

_PROFILE_NAME = re.compile(r"\A[A-Za-z0-9_.-]{1,64}\Z")
_FILTER = re.compile(r"\A[A-Za-z0-9_.-]{1,32}\Z")


class BackupProfileError(QubesException):
    """A profile that is missing, unreadable or not valid; the message says which."""


@dataclass(frozen=True)
class Profile:
    name: str
    include: tuple[str, ...] | None
    exclude: tuple[str, ...]
    destination_vm: str
    destination_path: str
    passphrase_text: str | None
    passphrase_vm: str | None
    compression: str | None  # the filter; None for no compression


def profile_path(directory: Path, name: str) -> Path:
    if not _PROFILE_NAME.match(name) or name.startswith("."):
        raise BackupProfileError(f"Invalid backup profile name: {name!r}")
    return directory / f"{name}.conf"


def _names(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list) \
            or not all(isinstance(v, str) for v in value):
        raise BackupProfileError(f"Invalid backup profile: '{key}' must be a list of names")
    return tuple(v.replace("$", "@") for v in value)


def _text(data: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise BackupProfileError(f"Invalid backup profile - missing '{key}'")
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise BackupProfileError(f"Invalid backup profile: '{key}' must be text")
    return str(value)


def parse(name: str, text: str) -> Profile:
    """The profile ``name`` from its YAML ``text``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BackupProfileError(f"Invalid backup profile {name}: not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise BackupProfileError(f"Invalid backup profile {name}: not a mapping of keys")
    if "include" not in data:
        raise BackupProfileError("Invalid backup profile - missing 'include'")
    include = None if data["include"] is None else _names(data["include"], "include")
    compression = data.get("compression", True)
    if compression is True:
        chosen: str | None = "gzip"
    elif compression is False or compression is None:
        chosen = None
    elif isinstance(compression, str) and _FILTER.match(compression):
        chosen = compression
    else:
        raise BackupProfileError(f"Invalid backup profile: compression {compression!r}")
    dest_vm = _text(data, "destination_vm")
    dest_path = _text(data, "destination_path")
    assert dest_vm is not None and dest_path is not None
    return Profile(name, include, _names(data.get("exclude"), "exclude"), dest_vm, dest_path,
                   _text(data, "passphrase_text", False), _text(data, "passphrase_vm", False),
                   chosen)


def load(directory: Path, name: str) -> Profile:
    path = profile_path(directory, name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BackupProfileError(f"Backup profile does not exist: {name}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupProfileError(f"Cannot read backup profile {name}: {exc}") from None
    return parse(name, text)


def dump(profile: Profile) -> str:
    """The YAML text of ``profile`` (what ``qvm-backup`` writes for septad)."""
    data: dict[str, Any] = {
        "include": None if profile.include is None else list(profile.include),
        "exclude": list(profile.exclude),
        "destination_vm": profile.destination_vm,
        "destination_path": profile.destination_path,
        "compression": profile.compression if profile.compression else False,
    }
    if profile.passphrase_text is not None:
        data["passphrase_text"] = profile.passphrase_text
    if profile.passphrase_vm is not None:
        data["passphrase_vm"] = profile.passphrase_vm
    return str(yaml.safe_dump(data, default_flow_style=False, sort_keys=False))
