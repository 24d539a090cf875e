"""Errors of the backup library: one class per kind of failure, each with a message
that names the problem (and the archive member concerned) for the user."""

from __future__ import annotations


class BackupError(Exception):
    """Base of every error raised by :mod:`septa.backup`."""


class ScryptError(BackupError):
    """A scrypt-format file could not be decrypted."""


class NotScryptFileError(ScryptError):
    """The data does not start with the scrypt file magic and version 0."""


class CorruptHeaderError(ScryptError):
    """The scrypt header's SHA-256 checksum does not match: the header was changed."""


class ParamsTooExpensiveError(ScryptError):
    """The header asks for more memory or work than the caller's limits allow."""


class WrongPassphraseError(ScryptError):
    """The header HMAC does not match: wrong passphrase (or a changed header HMAC)."""


class IntegrityError(ScryptError):
    """The final HMAC does not match: the data was changed or cut short."""


class TruncatedError(ScryptError):
    """The file ends before its header and final HMAC are complete."""


class BackupFormatError(BackupError):
    """The backup stream is not laid out as format 4 expects (outer tar, names, order,
    header fields)."""


class BackupPassphraseError(BackupFormatError):
    """The backup header does not verify: the passphrase is wrong (or the header changed)."""


class MemberError(BackupFormatError):
    """A member of the backup failed: missing, reordered or changed chunk, or its inner
    archive does not extract. ``member`` is the member path (e.g. ``vm3/private.img``)."""

    def __init__(self, member: str, message: str) -> None:
        super().__init__(f"{member}: {message}")
        self.member = member
