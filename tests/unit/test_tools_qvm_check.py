"""qvm-check: exit codes and messages as Qubes' tool gives them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import septa.paths
from septa.client.testing import FakeAdminServer
from septa.tools import qvm_check


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect(
            "dom0",
            "admin.vm.List",
            ok="work class=AppVM state=Halted\nnet class=AppVM state=Running\n"
            "tpl class=TemplateVM state=Halted\n",
        )
        srv.expect("work", "admin.vm.CurrentState", ok="power_state=Halted")
        srv.expect("net", "admin.vm.CurrentState", ok="power_state=Running")
        srv.expect("tpl", "admin.vm.CurrentState", ok="power_state=Halted")
        yield srv


@pytest.mark.parametrize(
    ("argv", "code", "err"),
    [
        (["work"], 0, "qvm-check: work: exists\n"),
        (["work", "nope"], 1, "qvm-check: work: exists\nqvm-check: nope: non-existent!\n"),
        (["--running", "net"], 0, "qvm-check: net: running\n"),
        (["--running", "work", "net"], 3, "qvm-check: net: running\n"),
        (["--running", "work"], 1, "qvm-check: None of qubes: running\n"),
        (["--template", "tpl", "work"], 3, "qvm-check: tpl: template\n"),
        (["--paused", "net"], 1, "qvm-check: None of qubes: paused\n"),
        (["-q", "nope"], 1, "nope: non-existent!\n"),
        (["-q", "work"], 0, ""),
        (["w*"], 1, "qvm-check: w*: non-existent!\n"),
    ],
)
def test_exit_codes_and_messages(
    server: FakeAdminServer,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    err: str,
) -> None:
    assert qvm_check.main(argv) == code
    assert capsys.readouterr() == ("", err)


def test_networked_reads_netvm(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect(
        "work", "admin.vm.property.Get", "provides_network", ok="default=True type=bool False"
    )
    server.expect("work", "admin.vm.property.Get", "netvm", ok="default=True type=vm net")
    server.expect(
        "tpl", "admin.vm.property.Get", "provides_network", ok="default=True type=bool False"
    )
    server.expect("tpl", "admin.vm.property.Get", "netvm", ok="default=False type=vm ")
    assert qvm_check.main(["--networked", "work", "tpl"]) == 3
    assert capsys.readouterr().err == "qvm-check: work: networked\n"


def test_all_excludes_dom0(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect(
        "dom0",
        "admin.vm.List",
        ok="dom0 class=AdminVM state=Running\nwork class=AppVM state=Halted\n",
    )
    assert qvm_check.main(["--all"]) == 0
    assert capsys.readouterr().err == "qvm-check: work: exists\n"
