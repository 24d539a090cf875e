"""qvm-remove and qvm-clone against a fake septad."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

import septa.paths
from septa.client.testing import ANY, FakeAdminServer
from septa.tools import qvm_clone, qvm_remove


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect(
            "dom0",
            "admin.vm.List",
            ok="dom0 class=AdminVM state=Running\nwork class=AppVM state=Halted\n"
            "sys-net class=AppVM state=Halted\nold class=AppVM state=Halted\n",
        )
        yield srv


def _answer(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_remove_after_confirmation(
    server: FakeAdminServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server.expect("work", "admin.vm.Remove", ok="")
    server.expect("old", "admin.vm.Remove", ok="")
    _answer(monkeypatch, "y\n")
    assert qvm_remove.main(["work", "old"]) == 0
    assert capsys.readouterr() == (
        "  work\n  old\nAre you sure? [y/N] ",
        "This will completely remove the selected VM(s)...\n",
    )
    assert [c for c in server.requests() if c[1] == "admin.vm.Remove"] == [
        ("work", "admin.vm.Remove", None),
        ("old", "admin.vm.Remove", None),
    ]


def test_remove_cancelled(
    server: FakeAdminServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _answer(monkeypatch, "n\n")
    assert qvm_remove.main(["work"]) == 1
    assert capsys.readouterr().err.endswith("Remove cancelled.\n")
    _answer(monkeypatch, "")
    assert qvm_remove.main(["work"]) == 1
    assert "admin.vm.Remove" not in server.methods()


def test_force_skips_the_prompt(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.expect("old", "admin.vm.Remove", ok="")
    assert qvm_remove.main(["-f", "old"]) == 0
    assert capsys.readouterr() == ("", "")


def test_in_use_lists_the_users_and_the_daemon_message(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.fail(
        "sys-net",
        "admin.vm.Remove",
        exc="QubesVMInUseError",
        message="VM sys-net is in use: global property default_netvm, work property netvm",
    )
    server.expect(
        "dom0", "admin.property.GetAll", ok="default_netvm default=False type=vm sys-net\n"
    )
    server.expect("dom0", "admin.vm.property.GetAll", ok="label default=True type=label black\n")
    server.expect("work", "admin.vm.property.GetAll", ok="netvm default=False type=vm sys-net\n")
    server.expect("old", "admin.vm.property.GetAll", ok="netvm default=True type=vm sys-net\n")
    assert qvm_remove.main(["--force", "sys-net"]) == 1
    assert capsys.readouterr().err == (
        "VM sys-net cannot be removed. It is in use as:\n"
        " - global property default_netvm\n"
        " - netvm for work\n"
        "qvm-remove: error: VM sys-net is in use: global property default_netvm, "
        "work property netvm\n"
    )


def test_dom0_and_unknown(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert qvm_remove.main(["-f", "dom0"]) == 1
    assert capsys.readouterr().err == "Domain 'dom0' cannot be removed.\n"
    assert qvm_remove.main(["-f", "nope"]) == 2
    assert capsys.readouterr().err.endswith("qvm-remove: error: no such domain: 'nope'\n")
    assert qvm_remove.main([]) == 2
    assert "one of the arguments --all VMNAME is required" in capsys.readouterr().err


def test_remove_all_needs_the_strong_confirmation(
    server: FakeAdminServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _answer(monkeypatch, "yes\n")
    assert qvm_remove.main(["--all"]) == 1
    out, err = capsys.readouterr()
    assert out == "Are you certain? [N/IKNOWWHATIAMDOING]"
    assert err.startswith("WARNING!!! Removing all domains")
    assert "admin.vm.Remove" not in server.methods()


def _clone_answers(server: FakeAdminServer) -> None:
    server.expect("work", "admin.vm.property.Get", "template", ok="default=False type=vm debian-12")
    server.expect("work", "admin.vm.property.Get", "label", ok="default=False type=label red")
    server.expect("work", "admin.vm.property.GetAll", ok="memory default=True type=int 400\n")
    server.expect("work", "admin.vm.tag.List", ok="")
    server.expect("work", "admin.vm.feature.List", ok="")
    server.expect("work", "admin.vm.notes.Get", ok="")
    server.expect("work", "admin.vm.firewall.Get", ok="")
    server.expect("copy", "admin.vm.firewall.Set", None, b"", ok="")
    server.expect("copy", "admin.vm.volume.List", ok="")
    server.expect(
        "dom0", "admin.vm.List", ok="work class=AppVM state=Halted\ncopy class=AppVM state=Halted\n"
    )


def test_clone_with_pool(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    _clone_answers(server)
    server.expect(
        "dom0",
        "admin.vm.CreateInPool.StandaloneVM",
        "debian-12",
        b"name=copy label=red pool=fast",
        ok="",
    )
    assert qvm_clone.main(["-C", "StandaloneVM", "-P", "fast", "work", "copy"]) == 0
    assert server.unexpected == []
    assert capsys.readouterr() == ("", "")


def test_clone_failure_is_one_line_and_cleans_up(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _clone_answers(server)
    server.expect("work", "admin.vm.volume.List", ok="")
    server.expect("dom0", "admin.vm.Create.AppVM", "debian-12", ANY, ok="")
    server.fail(
        "copy", "admin.vm.firewall.Set", None, b"", exc="QubesValueError", message="bad rule"
    )
    server.expect("copy", "admin.vm.Remove", ok="")
    assert qvm_clone.main(["work", "copy"]) == 1
    assert capsys.readouterr().err == (
        "app: Failed to set firewall: bad rule\nqvm-clone: error: bad rule\n"
    )
    assert server.requests()[-1] == ("copy", "admin.vm.Remove", None)


def test_clone_usage_errors(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert qvm_clone.main(["work"]) == 2
    assert "the following arguments are required: NEWVM" in capsys.readouterr().err
    assert qvm_clone.main(["-P", "a", "-p", "private=b", "work", "copy"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert qvm_clone.main(["nope", "copy"]) == 2
    assert capsys.readouterr().err.endswith("qvm-clone: error: no such domain: 'nope'\n")
