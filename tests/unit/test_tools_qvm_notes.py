"""qvm-notes against a fake septad: every action, the prompt, the editor."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

import septa.paths
from septa.client.testing import FakeAdminServer
from septa.tools import qvm_notes


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect("dom0", "admin.vm.List", ok="work class=AppVM state=Halted\n")
        srv.expect("work", "admin.vm.notes.Get", ok="first line\nsecond")
        srv.expect("work", "admin.vm.notes.Set", ok="")
        yield srv


def _set_payloads(server: FakeAdminServer) -> list[bytes]:
    return [c.payload for c in server.calls if c.method == "admin.vm.notes.Set"]


def test_print(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert qvm_notes.main(["work", "--print"]) == 0
    assert capsys.readouterr().out == "first line\nsecond\n"


def test_set_append_and_import(server: FakeAdminServer, tmp_path: Path) -> None:
    notes_file = tmp_path / "notes.txt"
    notes_file.write_text("from a file ✓\n", encoding="utf-8")
    assert qvm_notes.main(["work", "--set", "new text"]) == 0
    assert qvm_notes.main(["work", "--append", "third"]) == 0
    assert qvm_notes.main(["work", "-i", str(notes_file)]) == 0
    assert qvm_notes.main(["work", "-s", ""]) == 0
    assert _set_payloads(server) == [
        b"new text",
        b"first line\nsecond\nthird",
        "from a file ✓\n".encode(),
        b"",
    ]


def test_append_after_a_final_newline_adds_none(server: FakeAdminServer) -> None:
    server.expect("work", "admin.vm.notes.Get", ok="ends with newline\n")
    assert qvm_notes.main(["work", "--append", "more"]) == 0
    assert _set_payloads(server) == [b"ends with newline\nmore"]


def test_delete_asks_unless_forced(
    server: FakeAdminServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert qvm_notes.main(["work", "--delete"]) == 2
    assert capsys.readouterr().out == (
        "You are about to delete existing qube notes\nAre you certain? [y/N]"
    )
    assert _set_payloads(server) == []
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert qvm_notes.main(["work", "-d"]) == 0
    assert qvm_notes.main(["work", "-d", "--force"]) == 0
    assert _set_payloads(server) == [b"", b""]


def test_edit_saves_only_when_the_file_was_written(
    server: FakeAdminServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    editor = tmp_path / "editor"
    editor.write_text('#!/bin/sh\ngrep -q "^first line" "$1" && sleep 0.01 && echo edited > "$1"\n')
    editor.chmod(0o755)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", str(editor))
    assert qvm_notes.main(["work"]) == 0
    assert _set_payloads(server) == [b"edited\n"]
    monkeypatch.setenv("VISUAL", "true")
    assert qvm_notes.main(["work", "--edit"]) == 0
    assert _set_payloads(server) == [b"edited\n"]
    assert list(Path(tmp_path).glob("work_qube_*")) == []


def test_failures_are_logged(
    server: FakeAdminServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.fail("work", "admin.vm.notes.Set", exc="QubesNotesError", message="too long")
    assert qvm_notes.main(["work", "--set", "x"]) == 1
    assert capsys.readouterr().err == "root: Unable to set qube notes: too long\n"
    missing = tmp_path / "missing.txt"
    assert qvm_notes.main(["work", "--import", str(missing)]) == 1
    assert capsys.readouterr().err == (
        f"root: Unable to import notes file: [Errno 2] No such file or directory: '{missing}'\n"
    )
    assert qvm_notes.main(["work", "--set", "x", "--print"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
