"""qubes-vm-update against a fake septad, with the calls into qubes stubbed."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import septa.paths
from septa.client.errors import QubesVMError
from septa.client.qrexec import CallRequest
from septa.client.testing import ANY, FakeAdminServer
from septa.tools import qubes_vm_update

LISTING = ("debian-12 class=TemplateVM state=Halted\n"
           "fedora class=TemplateVM state=Running\n"
           "old class=TemplateVM state=Halted\n"
           "work class=AppVM state=Running\n"
           "idle class=AppVM state=Halted\n"
           "alone class=StandaloneVM state=Halted\n")
UPGRADED = b"3 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.\n"
NOTHING = b"0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n"

Answer = tuple[int, bytes]


class Guests:
    """Stands in for run_call: answers by (qube, step), records the commands."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], Answer] = {}
        self.calls: list[tuple[str, str]] = []

    def __call__(self, request: CallRequest, *, prefix: bytes = b"",
                 stdout: Callable[[bytes], None] | None = None,
                 stderr: Callable[[bytes], None] | None = None, **_: object) -> int:
        assert request.service == "qubes.VMShell" and request.user == "root"
        step = "refresh" if b"apt-get -q update" in prefix else "upgrade"
        self.calls.append((request.target, step))
        status, output = self.answers.get((request.target, step), (0, UPGRADED))
        if stdout is not None:
            stdout(output)
        return status


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect("dom0", "admin.vm.List", ok=LISTING)
        for line in LISTING.splitlines():
            name, _, state = line.split()
            srv.fail(name, "admin.vm.feature.Get", ANY,
                     exc="QubesFeatureNotFoundError", message="no")
            srv.expect(name, "admin.vm.CurrentState", ok=f"power_{state}")
        yield srv


@pytest.fixture
def guests(monkeypatch: pytest.MonkeyPatch) -> Guests:
    fake = Guests()
    monkeypatch.setattr(qubes_vm_update, "run_call", fake)
    return fake


def power(server: FakeAdminServer) -> list[tuple[str, str, str | None]]:
    return [r for r in server.requests() if r[1] in ("admin.vm.Start", "admin.vm.Shutdown")]


def test_templates_by_default_started_and_stopped_again(
        server: FakeAdminServer, guests: Guests, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("debian-12", "old", "fedora"):
        for method in ("admin.vm.Start", "admin.vm.Shutdown"):
            server.expect(name, method, ANY, ok="")
    guests.answers[("fedora", "upgrade")] = (0, NOTHING)
    assert qubes_vm_update.main([]) == 0
    assert guests.calls == [(name, step) for name in ("debian-12", "fedora", "old")
                            for step in ("refresh", "upgrade")]
    assert power(server) == [("debian-12", "admin.vm.Start", None),
                             ("debian-12", "admin.vm.Shutdown", "wait"),
                             ("old", "admin.vm.Start", None),
                             ("old", "admin.vm.Shutdown", "wait")]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Following qubes will be updated: debian-12, fedora, old"
    assert out[-3:] == ["debian-12: success", "fedora: no updates", "old: success"]
    assert "debian-12: starting" in out and "fedora: starting" not in out


def test_failures_give_qubes_exit_codes_and_a_summary(
        server: FakeAdminServer, guests: Guests, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("debian-12", "admin.vm.Start", ok="")
    server.fail("debian-12", "admin.vm.Shutdown", ANY, exc="QubesVMError", message="stuck")
    server.fail("old", "admin.vm.Start", exc="QubesVMError", message="no memory")
    guests.answers[("fedora", "refresh")] = (100, b"E: Failed to fetch\n")
    assert qubes_vm_update.main(["-T"]) == 23
    assert ("fedora", "upgrade") not in guests.calls
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-3:] == ["debian-12: error", "fedora: error", "old: error"]
    assert captured.err == ("    cannot shut it down again: stuck\n"
                            "    refreshing package lists failed (exit status 100)\n"
                            "    E: Failed to fetch\n"
                            "    no memory\n")


def test_force_upgrade_and_no_refresh(server: FakeAdminServer, guests: Guests) -> None:
    guests.answers[("fedora", "refresh")] = (100, b"")
    assert qubes_vm_update.main(["--targets", "fedora", "--force-upgrade", "-q"]) == 23
    assert guests.calls == [("fedora", "refresh"), ("fedora", "upgrade")]
    guests.calls.clear()
    guests.answers[("fedora", "upgrade")] = (1, b"dpkg: error\n")
    assert qubes_vm_update.main(["--targets", "fedora", "--no-refresh", "-q"]) == 24
    assert guests.calls == [("fedora", "upgrade")]


def test_a_call_that_cannot_be_made(server: FakeAdminServer, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    def broken(request: CallRequest, **_: object) -> int:
        raise QubesVMError("qrexec is not connected")

    monkeypatch.setattr(qubes_vm_update, "run_call", broken)
    assert qubes_vm_update.main(["--targets", "fedora"]) == 40
    assert "refreshing package lists: qrexec is not connected" in capsys.readouterr().err


def test_selection(server: FakeAdminServer, guests: Guests,
                   capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("old", "admin.vm.feature.Get", "skip-update", ok="1")

    def selected(*args: str) -> str:
        assert qubes_vm_update.main(["--dry-run", *args]) == 0
        return capsys.readouterr().out.strip()

    assert selected() == "Following qubes will be updated: debian-12, fedora"
    assert selected("-S", "--skip", "fedora") == "Following qubes will be updated: alone"
    assert selected("--all", "--skip", "debian-12,fedora") == \
        "Following qubes will be updated: alone, work"
    assert selected("--targets", "old,idle") == "Following qubes will be updated: idle, old"
    assert selected("-A", "--targets", "old") == "Following qubes will be updated: old, work"
    assert selected("--targets", "work", "--skip", "work") == "No qube selected for update"
    assert guests.calls == []
    assert power(server) == []


def test_unknown_names(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert qubes_vm_update.main(["--targets", "nope,debian-12"]) == 64
    assert capsys.readouterr().err == "Unknown qube name: nope\n"
    assert qubes_vm_update.main(["--targets", "nope,gone"]) == 64
    assert capsys.readouterr().err == "Unknown qube names: nope, gone\n"
