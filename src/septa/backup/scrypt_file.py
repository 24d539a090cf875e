"""The Tarsnap scrypt file format (what ``scrypt enc`` writes and ``scrypt dec`` reads),
streaming in both directions with constant memory.

Layout: bytes 0-5 ``scrypt``, 6 version 0, 7 log2(N), 8-11 r, 12-15 p (big-endian),
16-47 salt, 48-63 the first 16 bytes of SHA-256 over bytes 0-47, 64-95 HMAC-SHA256 over
bytes 0-63, then the AES-256-CTR ciphertext (counter block starting at zero), then
HMAC-SHA256 over everything before it. ``scrypt(passphrase, salt, N, r, p, 64)`` gives the
AES key (first 32 bytes) and the HMAC key (last 32).

Decryption is necessarily streamed before it is authenticated: the final HMAC comes
last. :func:`decrypt` therefore writes plaintext to the caller's sink as it goes and
raises at the end when the HMAC does not match; **the caller must discard whatever the
sink received when it raises**. :func:`decrypt_file` does this for a path (temporary
file, renamed into place only after the HMAC matched).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from septa.backup.errors import (
    CorruptHeaderError,
    IntegrityError,
    NotScryptFileError,
    ParamsTooExpensiveError,
    TruncatedError,
    WrongPassphraseError,
)

MAGIC = b"scrypt"
HEADER_SIZE = 96
MAC_SIZE = 32
OVERHEAD = HEADER_SIZE + MAC_SIZE
IO_BLOCK = 1 << 20


class Reader(Protocol):
    """What :func:`decrypt` and :func:`encrypt` read from (a file, a pipe, a tar entry)."""

    def read(self, size: int, /) -> bytes:
        """Up to *size* bytes; b"" only at the end."""


class Writer(Protocol):
    """What :func:`decrypt` and :func:`encrypt` write to."""

    def write(self, data: bytes, /) -> object:
        """Write all of *data*."""


@dataclass(frozen=True)
class ScryptParams:
    """The scrypt work parameters N = 2**log_n, r, p."""

    log_n: int
    r: int
    p: int

    def __post_init__(self) -> None:
        if not 1 <= self.log_n <= 63 or not 1 <= self.r < 2**32 or not 1 <= self.p < 2**32:
            raise ValueError(f"invalid scrypt parameters {self}")

    @property
    def memory(self) -> int:
        """Bytes of memory a key derivation needs (V array plus the p blocks)."""
        return 128 * self.r * ((1 << self.log_n) + self.p + 1)

    @property
    def work(self) -> int:
        """N * r * p, proportional to the CPU time of a key derivation."""
        return (1 << self.log_n) * self.r * self.p


#: N = 2**20, r = 8, p = 1: the strength of the scrypt paper's file-encryption setting and
#: close to what ``scrypt enc`` picks on common hardware (1 GiB, ~2-4 s per key). A backup
#: derives one key per 100 MiB chunk, so the tool's own 5 s calibration is not repeated
#: here; callers may pass stronger (or, for tests, cheaper) parameters.
DEFAULT_PARAMS = ScryptParams(log_n=20, r=8, p=1)


def _half_of_ram() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError):
        return 2 << 30


@dataclass(frozen=True)
class Limits:
    """What a file being decrypted may ask for. The defaults follow ``scrypt dec``: at
    most half of the RAM, and work worth minutes of CPU (N*r*p <= 2**30), so a malicious
    header cannot make us allocate or spin without bound."""

    max_memory: int = field(default_factory=_half_of_ram)
    max_work: int = 1 << 30

    def check(self, params: ScryptParams) -> None:
        """Raise :class:`ParamsTooExpensiveError` when *params* exceed these limits."""
        if params.memory > self.max_memory:
            raise ParamsTooExpensiveError(
                f"the file asks for {params.memory} bytes of memory to derive its key "
                f"(N=2^{params.log_n}, r={params.r}, p={params.p}); limit {self.max_memory}")
        if params.work > self.max_work:
            raise ParamsTooExpensiveError(
                f"the file asks for N*r*p={params.work} (N=2^{params.log_n}, r={params.r}, "
                f"p={params.p}); limit {self.max_work}")


@dataclass(frozen=True)
class DerivedKey:
    """A salt with the keys scrypt derived from it; :func:`derive_key` makes one, and it
    may be made ahead of time (e.g. in a thread) for the next chunk of a backup."""

    params: ScryptParams
    salt: bytes
    aes_key: bytes
    hmac_key: bytes


def _kdf(passphrase: bytes, salt: bytes, params: ScryptParams) -> tuple[bytes, bytes]:
    derived = Scrypt(salt=salt, length=64, n=1 << params.log_n, r=params.r,
                     p=params.p).derive(passphrase)
    return derived[:32], derived[32:]


def derive_key(passphrase: bytes, params: ScryptParams = DEFAULT_PARAMS,
               salt: bytes | None = None) -> DerivedKey:
    """Derive the AES and HMAC keys for a new file (random 32-byte salt unless given)."""
    salt = secrets.token_bytes(32) if salt is None else salt
    if len(salt) != 32:
        raise ValueError("the scrypt file salt is 32 bytes")
    aes_key, hmac_key = _kdf(passphrase, salt, params)
    return DerivedKey(params, salt, aes_key, hmac_key)


def _ctr(aes_key: bytes) -> CipherContext:
    return Cipher(algorithms.AES(aes_key), modes.CTR(bytes(16))).encryptor()


class Encryptor:
    """Incremental encryption: ``header``, then ``update(plaintext)`` for each piece, then
    ``finalize()`` for the trailing HMAC. Output size is input size + :data:`OVERHEAD`."""

    def __init__(self, key: DerivedKey) -> None:
        params = key.params
        start = (MAGIC + bytes([0, params.log_n]) + params.r.to_bytes(4, "big")
                 + params.p.to_bytes(4, "big") + key.salt)
        start += hashlib.sha256(start).digest()[:16]
        self.header = start + hmac.digest(key.hmac_key, start, "sha256")
        self._mac = hmac.new(key.hmac_key, self.header, "sha256")
        self._cipher = _ctr(key.aes_key)

    def update(self, plaintext: bytes) -> bytes:
        """Encrypt the next piece of plaintext."""
        ciphertext = self._cipher.update(plaintext)
        self._mac.update(ciphertext)
        return ciphertext

    def finalize(self) -> bytes:
        """The 32-byte HMAC that ends the file."""
        return self._mac.digest()


def _as_bytes(passphrase: str | bytes) -> bytes:
    return passphrase.encode() if isinstance(passphrase, str) else passphrase


def encrypt(source: Reader, sink: Writer, passphrase: str | bytes,
            params: ScryptParams = DEFAULT_PARAMS, *, key: DerivedKey | None = None) -> int:
    """Encrypt all of *source* into *sink* in scrypt file format; returns bytes written.
    *key* (from :func:`derive_key` with the same passphrase) skips the key derivation."""
    encryptor = Encryptor(key or derive_key(_as_bytes(passphrase), params))
    sink.write(encryptor.header)
    written = HEADER_SIZE + MAC_SIZE
    while block := source.read(IO_BLOCK):
        sink.write(encryptor.update(block))
        written += len(block)
    sink.write(encryptor.finalize())
    return written


def parse_header(header: bytes) -> ScryptParams:
    """Check the magic, version and SHA-256 checksum of a 96-byte header; return its
    parameters (the header HMAC needs the key, :func:`decrypt` checks it)."""
    if len(header) < HEADER_SIZE:
        raise TruncatedError(f"the file ends after {len(header)} bytes, inside its "
                             f"{HEADER_SIZE}-byte header")
    if header[:6] != MAGIC:
        raise NotScryptFileError("not a scrypt-encrypted file (bad magic)")
    if header[6] != 0:
        raise NotScryptFileError(f"unsupported scrypt file version {header[6]}")
    if hashlib.sha256(header[:48]).digest()[:16] != header[48:64]:
        raise CorruptHeaderError("the scrypt header checksum does not match: the header "
                                 "(parameters or salt) was changed")
    try:
        return ScryptParams(header[7], int.from_bytes(header[8:12], "big"),
                            int.from_bytes(header[12:16], "big"))
    except ValueError as err:
        raise CorruptHeaderError(str(err)) from None


def _read_exactly(source: Reader, size: int) -> bytes:
    data = b""
    while len(data) < size:
        block = source.read(size - len(data))
        if not block:
            break
        data += block
    return data


def decrypt(source: Reader, sink: Writer, passphrase: str | bytes, *,
            limits: Limits | None = None,
            progress: Callable[[int], None] | None = None) -> int:
    """Decrypt the scrypt file read from *source* (to its EOF) into *sink*; returns the
    plaintext size. Raises a :class:`~septa.backup.errors.ScryptError` subclass naming
    the problem. **On any error, what *sink* received must be discarded**: the final HMAC
    is only known at the end. *progress* gets the size of each decrypted piece."""
    header = _read_exactly(source, HEADER_SIZE)
    params = parse_header(header)
    (limits or Limits()).check(params)
    aes_key, hmac_key = _kdf(_as_bytes(passphrase), header[16:48], params)
    if not hmac.compare_digest(hmac.digest(hmac_key, header[:64], "sha256"), header[64:]):
        raise WrongPassphraseError("wrong passphrase (the scrypt header HMAC does not "
                                   "match; or that HMAC was changed)")
    mac = hmac.new(hmac_key, header, "sha256")
    cipher = _ctr(aes_key)
    tail = b""
    total = 0
    while block := source.read(IO_BLOCK):
        data = tail + block if tail else block
        body, tail = data[:-MAC_SIZE], data[-MAC_SIZE:]
        if body:
            mac.update(body)
            sink.write(cipher.update(body))
            total += len(body)
            if progress is not None:
                progress(len(body))
    if len(tail) < MAC_SIZE:
        raise TruncatedError(f"the file ends {MAC_SIZE - len(tail)} bytes before its final "
                             f"HMAC is complete")
    if not hmac.compare_digest(mac.digest(), tail):
        raise IntegrityError("the final HMAC does not match: the encrypted data was "
                             "changed or cut short")
    return total


def decrypt_file(source: Path, destination: Path, passphrase: str | bytes, *,
                 limits: Limits | None = None) -> int:
    """Decrypt file *source* to *destination*, which appears only when the HMAC matched
    (written under a temporary name in the same directory, removed on any error)."""
    temporary = destination.with_name(f".{destination.name}.{secrets.token_hex(4)}.part")
    try:
        with source.open("rb") as reader, temporary.open("wb") as writer:
            size = decrypt(reader, writer, passphrase, limits=limits)
        temporary.rename(destination)
        return size
    finally:
        temporary.unlink(missing_ok=True)


def encrypt_file(source: Path, destination: Path, passphrase: str | bytes,
                 params: ScryptParams = DEFAULT_PARAMS) -> int:
    """Encrypt file *source* to *destination*; returns the bytes written."""
    with source.open("rb") as reader, destination.open("wb") as writer:
        return encrypt(reader, writer, passphrase, params)
