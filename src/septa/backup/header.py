"""The ``backup-header`` member: ASCII ``key=value`` lines, ``version`` first, in the order
and spelling Qubes writes (``version``, ``encrypted``, ``compressed``,
``compression-filter``, ``hmac-algorithm``, ``backup-id``), and its strict parser."""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

from septa.backup.errors import BackupFormatError

FORMAT_VERSION = 4
HMAC_ALGORITHM = "scrypt"
#: compression filters Qubes' restore accepts without being told to force one
KNOWN_FILTERS = ("gzip", "bzip2", "xz")
#: the header and its .hmac are a few hundred bytes; Qubes refuses .hmac files over 4 KiB
MAX_HEADER_SIZE = 4096

_TOKEN = re.compile(r"^[A-Za-z0-9-]*$")


def new_backup_id() -> str:
    """A backup id as Qubes makes them: local time ``YYYYmmddTHHMMSS-<pid>``."""
    return datetime.datetime.now().strftime("%Y%m%dT%H%M%S-") + str(os.getpid())


@dataclass(frozen=True)
class BackupHeader:
    """The fields of a format 4 header. ``compression_filter`` is None when the backup
    is not compressed (Qubes then still writes its default filter name; so do we)."""

    backup_id: str
    compression_filter: str | None = "gzip"
    version: int = FORMAT_VERSION
    encrypted: bool = True
    hmac_algorithm: str = HMAC_ALGORITHM

    @property
    def compressed(self) -> bool:
        """Whether member data went through the compression filter."""
        return self.compression_filter is not None

    def to_bytes(self) -> bytes:
        """The header file's bytes, exactly as Qubes' writer lays them out."""
        lines = [
            f"version={self.version}",
            f"encrypted={self.encrypted}",
            f"compressed={self.compressed}",
            f"compression-filter={self.compression_filter or 'gzip'}",
            f"hmac-algorithm={self.hmac_algorithm}",
            f"backup-id={self.backup_id}",
        ]
        return ("\n".join(lines) + "\n").encode("ascii")

    @classmethod
    def parse(cls, data: bytes) -> BackupHeader:
        """Parse and validate header bytes (already authenticated by the caller)."""
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise BackupFormatError("non-ASCII characters in the backup header") from None
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if not sep or "=" in value or not _TOKEN.match(key) or not _TOKEN.match(value):
                raise BackupFormatError(f"invalid backup header line {line!r}")
            if key in fields:
                raise BackupFormatError(f"duplicated backup header line: {key}")
            fields[key] = value
        for key in ("version", "encrypted", "compressed", "hmac-algorithm", "backup-id"):
            if key not in fields:
                raise BackupFormatError(f"the backup header lacks '{key}'")
        if fields["version"] != str(FORMAT_VERSION):
            raise BackupFormatError(f"unsupported backup format version {fields['version']} "
                                    f"(only {FORMAT_VERSION} is read)")
        if not _true(fields["encrypted"]):
            raise BackupFormatError("the backup header says the backup is not encrypted")
        if fields["hmac-algorithm"].lower() != HMAC_ALGORITHM:
            raise BackupFormatError(
                f"unsupported hmac-algorithm {fields['hmac-algorithm']} (format 4 uses scrypt)")
        backup_id = fields["backup-id"]
        if not backup_id or backup_id.startswith("-"):
            raise BackupFormatError(f"invalid backup-id {backup_id!r}")
        compression: str | None = None
        if _true(fields["compressed"]):
            compression = fields.get("compression-filter")
            if not compression:
                raise BackupFormatError("the backup header lacks 'compression-filter'")
        return cls(backup_id=backup_id, compression_filter=compression)


def _true(value: str) -> bool:
    return value.lower() in ("1", "true", "yes")
