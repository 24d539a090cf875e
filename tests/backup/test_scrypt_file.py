"""The scrypt file format: round trips, interoperability both ways with the real
``scrypt`` tool, and a specific error for every kind of damage."""

from __future__ import annotations

import hashlib
import io
import subprocess
from pathlib import Path

import pytest

from septa.backup import scrypt_file
from septa.backup.errors import (
    CorruptHeaderError,
    IntegrityError,
    NotScryptFileError,
    ParamsTooExpensiveError,
    ScryptError,
    TruncatedError,
    WrongPassphraseError,
)
from tests.backup.helpers import FAST, needs_scrypt, random_bytes

PASS = "pass phrase"


def encrypt(data: bytes, passphrase: str = PASS) -> bytes:
    out = io.BytesIO()
    scrypt_file.encrypt(io.BytesIO(data), out, passphrase, FAST)
    return out.getvalue()


def decrypt(blob: bytes, passphrase: str = PASS, **options: object) -> bytes:
    out = io.BytesIO()
    scrypt_file.decrypt(io.BytesIO(blob), out, passphrase, **options)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 1 << 20, (3 << 20) + 17])
def test_round_trip(size: int) -> None:
    data = random_bytes(size)
    blob = encrypt(data)
    assert len(blob) == size + scrypt_file.OVERHEAD
    assert blob[:6] == b"scrypt" and blob[6] == 0 and blob[7] == FAST.log_n
    assert decrypt(blob) == data


def test_header_layout() -> None:
    blob = encrypt(b"x")
    assert int.from_bytes(blob[8:12], "big") == 8 and int.from_bytes(blob[12:16], "big") == 1
    assert blob[48:64] == hashlib.sha256(blob[:48]).digest()[:16]


@needs_scrypt
def test_the_scrypt_tool_decrypts_ours(tmp_path: Path) -> None:
    data = random_bytes((2 << 20) + 5)
    (tmp_path / "enc").write_bytes(encrypt(data))
    (tmp_path / "pass").write_text(PASS)
    result = subprocess.run(["scrypt", "dec", "--passphrase", f"file:{tmp_path / 'pass'}",
                             str(tmp_path / "enc")], capture_output=True, check=True)
    assert result.stdout == data


@needs_scrypt
def test_we_decrypt_the_scrypt_tools(tmp_path: Path) -> None:
    data = random_bytes((2 << 20) + 5)
    (tmp_path / "plain").write_bytes(data)
    subprocess.run(["scrypt", "enc", "-P", "--logN", "12", "-r", "8", "-p", "2",
                    str(tmp_path / "plain"), str(tmp_path / "enc")],
                   input=PASS.encode() + b"\n", check=True)
    assert decrypt((tmp_path / "enc").read_bytes()) == data
    with pytest.raises(WrongPassphraseError):
        decrypt((tmp_path / "enc").read_bytes(), "not it")


@needs_scrypt
def test_the_tool_refuses_our_file_with_a_wrong_passphrase(tmp_path: Path) -> None:
    (tmp_path / "enc").write_bytes(encrypt(b"secret"))
    result = subprocess.run(["scrypt", "dec", "-P", str(tmp_path / "enc")],
                            input=b"wrong\n", capture_output=True)
    assert result.returncode != 0 and b"passphrase is incorrect" in result.stderr.lower()


def test_wrong_passphrase() -> None:
    with pytest.raises(WrongPassphraseError, match="wrong passphrase"):
        decrypt(encrypt(b"secret"), "Pass phrase")


@pytest.mark.parametrize("keep", [0, 5, 47, 95, 96, 100, 127])
def test_truncated_before_the_final_hmac(keep: int) -> None:
    with pytest.raises(TruncatedError):
        decrypt(encrypt(b"")[:keep])


@pytest.mark.parametrize("cut", [1, 31, 32, 1000])
def test_truncated_data(cut: int) -> None:
    blob = encrypt(random_bytes(5000))
    with pytest.raises((IntegrityError, TruncatedError)):
        decrypt(blob[:-cut])


@pytest.mark.parametrize(("offset", "error"), [
    (0, NotScryptFileError), (5, NotScryptFileError), (6, NotScryptFileError),
    (7, CorruptHeaderError), (9, CorruptHeaderError), (14, CorruptHeaderError),
    (16, CorruptHeaderError), (47, CorruptHeaderError), (48, CorruptHeaderError),
    (63, CorruptHeaderError), (64, WrongPassphraseError), (95, WrongPassphraseError),
    (96, IntegrityError), (2000, IntegrityError), (-33, IntegrityError), (-32, IntegrityError),
    (-1, IntegrityError),
])
def test_a_flipped_byte_anywhere_is_refused(offset: int, error: type[ScryptError]) -> None:
    blob = bytearray(encrypt(random_bytes(4096)))
    blob[offset] ^= 0x01
    with pytest.raises(error):
        decrypt(bytes(blob))


def test_every_byte_flipped_is_refused() -> None:
    blob = encrypt(b"short message")
    for offset in range(len(blob)):
        damaged = bytearray(blob)
        damaged[offset] ^= 0x80
        with pytest.raises(ScryptError):
            decrypt(bytes(damaged))


def _header_asking(log_n: int, r: int, p: int) -> bytes:
    start = b"scrypt\0" + bytes([log_n]) + r.to_bytes(4, "big") + p.to_bytes(4, "big")
    start += bytes(32)
    start += hashlib.sha256(start).digest()[:16]
    return start + bytes(32) + bytes(64)


@pytest.mark.parametrize(("log_n", "r", "p"), [(40, 8, 1), (20, 8, 100000), (30, 1, 1)])
def test_a_header_asking_for_too_much_is_refused_before_any_work(log_n: int, r: int,
                                                                 p: int) -> None:
    with pytest.raises(ParamsTooExpensiveError):
        decrypt(_header_asking(log_n, r, p),
                limits=scrypt_file.Limits(max_memory=1 << 30, max_work=1 << 28))


def test_limits_can_be_raised_for_a_file_that_needs_more() -> None:
    blob = encrypt(b"data")
    with pytest.raises(ParamsTooExpensiveError):
        decrypt(blob, limits=scrypt_file.Limits(max_memory=1 << 16))
    assert decrypt(blob, limits=scrypt_file.Limits(max_memory=1 << 30)) == b"data"


def test_decrypt_file_leaves_nothing_when_the_data_was_changed(tmp_path: Path) -> None:
    blob = bytearray(encrypt(random_bytes(100_000)))
    blob[50_000] ^= 1
    work = tmp_path / "work"
    work.mkdir()
    (work / "enc").write_bytes(bytes(blob))
    with pytest.raises(IntegrityError):
        scrypt_file.decrypt_file(work / "enc", work / "plain", PASS)
    assert sorted(p.name for p in work.iterdir()) == ["enc"]


def test_decrypt_file_and_encrypt_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"hello")
    scrypt_file.encrypt_file(tmp_path / "plain", tmp_path / "enc", PASS, FAST)
    scrypt_file.decrypt_file(tmp_path / "enc", tmp_path / "back", PASS)
    assert (tmp_path / "back").read_bytes() == b"hello"


def test_default_parameters_are_the_scrypt_papers_file_setting() -> None:
    assert scrypt_file.DEFAULT_PARAMS == scrypt_file.ScryptParams(20, 8, 1)
    assert scrypt_file.DEFAULT_PARAMS.memory < scrypt_file.Limits(max_memory=2 << 30).max_memory
