"""Qubes backup format 4: the scrypt file format, the backup stream writer and reader.

Knows nothing of septad or the registry: it takes and gives streams and file paths.
``BackupWriter`` writes a backup to any binary stream (``atomic_output`` for a path);
``BackupReader`` reads one sequentially (a pipe is fine), member by member. See
``../shared/spec/backup-format.md`` for the layout.
"""

from septa.backup.atomic import atomic_output
from septa.backup.errors import (
    BackupError,
    BackupFormatError,
    BackupPassphraseError,
    MemberError,
    ScryptError,
)
from septa.backup.header import BackupHeader
from septa.backup.reader import BackupReader, Member
from septa.backup.scrypt_file import DEFAULT_PARAMS, Limits, ScryptParams
from septa.backup.sparse_tar import device_size
from septa.backup.writer import CHUNK_SIZE, BackupWriter, disk_usage

__all__ = [
    "CHUNK_SIZE", "DEFAULT_PARAMS", "BackupError", "BackupFormatError", "BackupHeader",
    "BackupPassphraseError", "BackupReader", "BackupWriter", "Limits", "Member",
    "MemberError", "ScryptError", "ScryptParams", "atomic_output", "device_size", "disk_usage",
]
