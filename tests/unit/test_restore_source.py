"""Where qvm-backup-restore reads from: a dom0 file, or a qube's qubes.Restore output
streamed through a pipe (the qrexec call replaced by a fake here)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from septa.client.errors import QubesException
from septa.client.qrexec import CallRequest
from septa.tools import restore_source
from septa.tools.restore_progress import ReadProgress


def fake_call(data: bytes, status: int = 0, errors: bytes = b"",
              seen: list[object] | None = None) -> Callable[..., int]:
    def run_call(request: CallRequest, *, stdin: IO[bytes] | None = None, prefix: bytes = b"",
                 stdout: Callable[[bytes], None] | None = None,
                 stderr: Callable[[bytes], None] | None = None) -> int:
        if seen is not None:
            seen.extend([request, prefix])
        assert stdout is not None and stderr is not None
        for start in range(0, len(data), 70000):
            stdout(data[start:start + 70000])
        if errors:
            stderr(errors)
        return status
    return run_call


def test_a_qube_streams_its_backup(monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(5 << 20)
    seen: list[object] = []
    monkeypatch.setattr(restore_source, "run_call", fake_call(data, seen=seen))
    source = restore_source.open_source("/home/user/backups/b\nx", "holder")
    assert source.stream.read() == data
    source.finish()
    source.close()
    request, prefix = seen
    assert isinstance(request, CallRequest)
    assert (request.target, request.service) == ("holder", "qubes.Restore")
    assert prefix == b"/home/user/backups/bx\n\n", "location, then the (empty) member list"


def test_a_failing_service_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restore_source, "run_call",
                        fake_call(b"", 1, b"cat: /nope: No such file or directory\n"))
    source = restore_source.open_source("/nope", "holder")
    assert source.stream.read() == b""
    with pytest.raises(QubesException, match="qubes.Restore in holder failed .exit status 1.: "
                                             "cat: /nope: No such file"):
        source.finish()


def test_closing_early_ends_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restore_source, "run_call", fake_call(bytes(16 << 20)))
    source = restore_source.open_source("/big", "holder")
    assert len(source.stream.read(1000)) == 1000
    source.close()
    assert source.failure() is None, "a broken pipe is our doing, not the qube's"


def test_dom0_files(tmp_path: Path) -> None:
    (tmp_path / "backup").write_bytes(b"data")
    source = restore_source.open_source(str(tmp_path / "backup"), None)
    assert (source.total, source.stream.read()) == (4, b"data")
    source.close()
    with pytest.raises(QubesException, match="is a directory"):
        restore_source.open_source(str(tmp_path), "dom0")
    with pytest.raises(QubesException, match="cannot open the backup"):
        restore_source.open_source(str(tmp_path / "nope"), None)


def test_plain_progress_lines(tmp_path: Path) -> None:
    out = (tmp_path / "out").open("w+")
    with ReadProgress(100 << 20, stream=out) as progress:
        for done in range(0, 101 << 20, 1 << 20):
            progress(min(done, 99 << 20))
    out.seek(0)
    lines = out.read().splitlines()
    assert lines[0] == "Reading the backup: 0 B of 100.0 MiB (0%)"
    assert lines[-1] == "Reading the backup: 100.0 MiB of 100.0 MiB (100%)"
    assert len(lines) == 11, "every tenth, then the end"
