"""qvm-start, qvm-shutdown, qvm-kill, qvm-pause and qvm-unpause against a fake septad."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

import septa.client.waiting
import septa.paths
from septa.client.testing import Call, FakeAdminServer, error_frame, event_frame, ok_frame
from septa.tools import qvm_kill, qvm_pause, qvm_shutdown, qvm_start, qvm_unpause

Capsys = pytest.CaptureFixture[str]

VM_LIST = (
    "dom0 class=AdminVM state=Running\nwork class=AppVM state=Halted\n"
    "net class=AppVM state=Running\nmail class=AppVM state=Halted\n"
)


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect("dom0", "admin.vm.List", ok=VM_LIST)
        yield srv


def _state(server: FakeAdminServer, vm: str, *states: str) -> None:
    """Answer CurrentState with these power states in turn (the last one repeats)."""
    server.answer(vm, "admin.vm.CurrentState", raw=_sequence(*(f"power_state={s}" for s in states)))


def _sequence(*answers: str | bytes) -> Callable[[Call], bytes]:
    frames = [a if isinstance(a, bytes) else ok_frame(a) for a in answers]
    calls = [0]

    def answer(call: Call) -> bytes:
        calls[0] += 1
        return frames[min(calls[0], len(frames)) - 1]

    return answer


def _without_list(server: FakeAdminServer) -> list[tuple[str, str, str | None]]:
    return [r for r in server.requests() if r[1] != "admin.vm.List"]


# -- qvm-start -------------------------------------------------------------------------


def test_start(server: FakeAdminServer, capsys: Capsys) -> None:
    _state(server, "work", "Halted")
    server.expect("work", "admin.vm.Start", ok="")
    assert qvm_start.main(["work"]) == 0
    assert _without_list(server) == [
        ("work", "admin.vm.CurrentState", None),
        ("work", "admin.vm.Start", None),
    ]
    assert server.calls[-1].payload == b""
    assert capsys.readouterr() == ("", "")


def test_start_already_running_stops_at_once(server: FakeAdminServer, capsys: Capsys) -> None:
    _state(server, "net", "Running")
    assert qvm_start.main(["net", "work"]) == 1
    assert capsys.readouterr() == ("", "Error: domain net is already running\n")
    assert "admin.vm.Start" not in server.methods()


def test_start_skip_if_running_and_failures(server: FakeAdminServer, capsys: Capsys) -> None:
    _state(server, "net", "Running")
    _state(server, "work", "Halted")
    _state(server, "mail", "Halted")
    server.fail("work", "admin.vm.Start", exc="QubesVMError", message="Cannot start qube work")
    server.expect("mail", "admin.vm.Start", ok="")
    assert qvm_start.main(["--skip-if-running", "net", "work", "mail"]) == 1
    assert capsys.readouterr() == ("", "Error: Cannot start qube work\n")
    assert [r for r in server.requests() if r[1] == "admin.vm.Start"] == [
        ("work", "admin.vm.Start", None),
        ("mail", "admin.vm.Start", None),
    ]


def test_start_all_skips_dom0(server: FakeAdminServer) -> None:
    for vm in ("work", "net", "mail"):
        _state(server, vm, "Halted")
        server.expect(vm, "admin.vm.Start", ok="")
    assert qvm_start.main(["--all", "--exclude", "net"]) == 0
    assert [r[0] for r in server.requests() if r[1] == "admin.vm.Start"] == ["mail", "work"]


def test_start_drive_options_are_not_supported(server: FakeAdminServer, capsys: Capsys) -> None:
    assert qvm_start.main(["--cdrom=dom0:/tmp/x.iso", "work"]) == 1
    assert capsys.readouterr().err == (
        "Error: attaching a drive at start (--drive, --hddisk, --cdrom, "
        "--install-windows-tools) is not supported yet\n"
    )
    assert server.methods() == ["admin.vm.List"]


def test_start_usage_errors(server: FakeAdminServer, capsys: Capsys) -> None:
    assert qvm_start.main([]) == 2
    assert "one of the arguments --all VMNAME is required" in capsys.readouterr().err
    assert qvm_start.main(["ghost"]) == 2
    assert capsys.readouterr().err.endswith("qvm-start: error: no such domain: 'ghost'\n")


# -- qvm-shutdown ----------------------------------------------------------------------


def test_shutdown(server: FakeAdminServer, capsys: Capsys) -> None:
    server.expect("net", "admin.vm.Shutdown", ok="")
    server.fail("work", "admin.vm.Shutdown", exc="QubesVMNotStartedError", message="powered off")
    assert qvm_shutdown.main(["net", "work"]) == 0
    assert _without_list(server) == [
        ("net", "admin.vm.Shutdown", None),
        ("work", "admin.vm.Shutdown", None),
    ]
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("argv", "arg"),
    [
        (["--all"], "force"),
        (["--all", "--exclude", "mail"], None),
        (["--all", "--exclude", "mail", "--force"], "force"),
        (["--force", "net"], "force"),
    ],
)
def test_shutdown_force(server: FakeAdminServer, argv: list[str], arg: str | None) -> None:
    server.expect("net", "admin.vm.Shutdown", arg, ok="")
    server.expect("work", "admin.vm.Shutdown", arg, ok="")
    server.expect("mail", "admin.vm.Shutdown", arg, ok="")
    assert qvm_shutdown.main(argv) == 0
    assert server.unexpected == []
    assert {r[2] for r in _without_list(server)} == {arg}


def test_shutdown_failure_without_wait(server: FakeAdminServer, capsys: Capsys) -> None:
    server.fail("net", "admin.vm.Shutdown", exc="QubesVMInUseError", message="net is in use")
    server.expect("work", "admin.vm.Shutdown", ok="")
    assert qvm_shutdown.main(["net", "work"]) == 1
    assert capsys.readouterr().err == (
        "net: Shutdown error: net is in use\nqvm-shutdown: error: Failed to shut down: net\n"
    )


def _events(*events: tuple[str, str]) -> bytes:
    return event_frame("", "connection-established") + b"".join(
        event_frame(subject, name) for subject, name in events
    )


def test_shutdown_wait_for_events(server: FakeAdminServer, capsys: Capsys) -> None:
    server.expect("net", "admin.vm.Shutdown", ok="")
    server.expect("mail", "admin.vm.Shutdown", ok="")
    server.answer(
        "dom0",
        "admin.Events",
        raw=_events(
            ("net", "domain-pre-shutdown"), ("work", "domain-shutdown"), ("net", "domain-shutdown")
        ),
    )
    _state(server, "net", "Running", "Halted")
    _state(server, "mail", "Halted")
    assert qvm_shutdown.main(["--wait", "net", "mail"]) == 0
    assert _without_list(server) == [
        ("net", "admin.vm.Shutdown", None),
        ("mail", "admin.vm.Shutdown", None),
        ("dom0", "admin.Events", None),
        ("net", "admin.vm.CurrentState", None),
        ("mail", "admin.vm.CurrentState", None),
        ("net", "admin.vm.CurrentState", None),
        ("mail", "admin.vm.CurrentState", None),
    ]
    assert capsys.readouterr() == ("", "")


def test_shutdown_wait_kills_after_timeout(server: FakeAdminServer, capsys: Capsys) -> None:
    def silent_stream(call: Call) -> bytes:
        time.sleep(0.5)  # longer than --timeout: the client gives up first
        return _events()

    server.expect("net", "admin.vm.Shutdown", ok="")
    server.answer("dom0", "admin.Events", raw=silent_stream)
    server.expect("net", "admin.vm.Kill", ok="")
    _state(server, "net", "Halted")
    started = time.monotonic()
    assert qvm_shutdown.main(["--wait", "--timeout", "0.2", "net"]) == 0
    assert time.monotonic() - started < 2
    assert _without_list(server) == [
        ("net", "admin.vm.Shutdown", None),
        ("dom0", "admin.Events", None),
        ("net", "admin.vm.Kill", None),
        ("net", "admin.vm.CurrentState", None),
    ]
    assert capsys.readouterr() == ("", "")


def test_shutdown_wait_polls_without_events(
    server: FakeAdminServer, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(septa.client.waiting, "POLL_INTERVAL", 0.01)
    server.expect("net", "admin.vm.Shutdown", ok="")
    server.fail("dom0", "admin.Events", exc="QubesNotImplementedError", message="no events")
    _state(server, "net", "Running", "Running", "Halted")
    assert qvm_shutdown.main(["--wait", "net"]) == 0
    states = [r for r in server.requests() if r[1] == "admin.vm.CurrentState"]
    assert len(states) == 4  # two polls that still see it running, one halted, final check
    assert capsys.readouterr() == ("", "")


def test_shutdown_wait_retries_qubes_in_use(server: FakeAdminServer, capsys: Capsys) -> None:
    server.answer(
        "net",
        "admin.vm.Shutdown",
        raw=_sequence(error_frame("QubesVMInUseError", "work uses net"), ok_frame()),
    )
    server.expect("work", "admin.vm.Shutdown", ok="")
    server.answer(
        "dom0",
        "admin.Events",
        raw=_sequence(_events(("work", "domain-shutdown")), _events(("net", "domain-shutdown"))),
    )
    _state(server, "work", "Running", "Halted")
    _state(server, "net", "Running", "Halted")
    assert qvm_shutdown.main(["--wait", "net", "work"]) == 0
    assert [r for r in _without_list(server) if r[1] != "admin.vm.CurrentState"] == [
        ("net", "admin.vm.Shutdown", None),
        ("work", "admin.vm.Shutdown", None),
        ("dom0", "admin.Events", None),
        ("net", "admin.vm.Shutdown", None),
        ("dom0", "admin.Events", None),
    ]
    assert capsys.readouterr() == ("", "")


def test_shutdown_wait_reports_failures(server: FakeAdminServer, capsys: Capsys) -> None:
    server.fail("net", "admin.vm.Shutdown", exc="QubesVMInUseError", message="work uses net")
    server.fail("mail", "admin.vm.Shutdown", exc="QubesVMError", message="mail is stuck")
    _state(server, "net", "Running")
    _state(server, "mail", "Running")
    assert qvm_shutdown.main(["--wait", "net", "mail"]) == 2
    assert capsys.readouterr().err == (
        "net: Shutdown error: work uses net\n"
        "mail: Shutdown error: mail is stuck\n"
        "qvm-shutdown: error: Failed to shut down: net, mail\n"
    )
    assert "admin.Events" not in server.methods()


def test_shutdown_dry_run(server: FakeAdminServer) -> None:
    server.answer("dom0", "admin.Events", raw=_events(("net", "domain-shutdown")))
    _state(server, "net", "Running", "Halted")
    assert qvm_shutdown.main(["--dry-run", "net"]) == 0
    assert qvm_shutdown.main(["--dry-run", "--wait", "net"]) == 0
    assert "admin.vm.Shutdown" not in server.methods()
    assert "admin.vm.Kill" not in server.methods()


# -- qvm-kill, qvm-pause, qvm-unpause --------------------------------------------------


def test_kill(server: FakeAdminServer, capsys: Capsys) -> None:
    server.expect("net", "admin.vm.Kill", ok="")
    server.fail("work", "admin.vm.Kill", exc="QubesVMNotStartedError", message="powered off")
    server.fail("mail", "admin.vm.Kill", exc="QubesVMError", message="libvirt said no")
    assert qvm_kill.main(["mail", "work", "net"]) == 1
    assert capsys.readouterr() == ("", "Error: Failed to kill 'mail': libvirt said no\n")
    assert [r[0] for r in _without_list(server)] == ["mail", "work", "net"]


def test_pause_and_suspend(server: FakeAdminServer, capsys: Capsys) -> None:
    server.expect("net", "admin.vm.Pause", ok="")
    server.fail("work", "admin.vm.Pause", exc="QubesVMNotRunningError", message="not running")
    server.expect("net", "admin.vm.Suspend", ok="")
    assert qvm_pause.main(["work", "net"]) == 1
    assert capsys.readouterr() == ("", "Error: not running\n")
    assert qvm_pause.main(["-S", "net"]) == 0
    assert _without_list(server) == [
        ("work", "admin.vm.Pause", None),
        ("net", "admin.vm.Pause", None),
        ("net", "admin.vm.Suspend", None),
    ]


def test_unpause_resumes_suspended_qubes(server: FakeAdminServer, capsys: Capsys) -> None:
    _state(server, "net", "Paused")
    _state(server, "mail", "Suspended")
    server.expect("net", "admin.vm.Unpause", ok="")
    server.expect("mail", "admin.vm.Resume", ok="")
    assert qvm_unpause.main(["net", "mail"]) == 0
    assert [r for r in _without_list(server) if r[1] != "admin.vm.CurrentState"] == [
        ("net", "admin.vm.Unpause", None),
        ("mail", "admin.vm.Resume", None),
    ]
    assert capsys.readouterr() == ("", "")


def test_unpause_all_leaves_internal_qubes(server: FakeAdminServer, capsys: Capsys) -> None:
    server.fail("work", "admin.vm.feature.Get", "internal", exc="QubesFeatureNotFoundError")
    server.expect("net", "admin.vm.feature.Get", "internal", ok="1")
    server.expect("mail", "admin.vm.feature.Get", "internal", ok="")
    _state(server, "work", "Paused")
    _state(server, "mail", "Halted")
    server.expect("work", "admin.vm.Unpause", ok="")
    server.fail("mail", "admin.vm.Unpause", exc="QubesVMNotPausedError", message="not paused")
    assert qvm_unpause.main(["--all"]) == 1
    assert capsys.readouterr() == ("", "Error: not paused\n")
    assert [r[0] for r in server.requests() if r[1] == "admin.vm.Unpause"] == ["mail", "work"]
