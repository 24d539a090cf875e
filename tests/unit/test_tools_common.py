"""The pieces every tool shares: table layout, spinner, runner, argument parser."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

import septa.paths
from septa.client.app import Qubes
from septa.client.errors import QubesVMNotHaltedError
from septa.client.testing import FakeAdminServer
from septa.tools.parser import QubesArgumentParser
from septa.tools.runner import run
from septa.tools.spinner import Spinner
from septa.tools.table import format_table


def test_table_pads_all_but_the_last_column() -> None:
    assert format_table([["NAME", "X", "LAST"], ["a", "longer", ""], ["bb", "", "z"]]) == (
        "NAME  X       LAST\na     longer  \nbb            z\n"
    )
    assert format_table([]) == ""


def test_table_counts_wide_characters_twice() -> None:
    assert format_table([["日本", "x"], ["ab", "y"]]) == "日本  x\nab    y\n"


def test_spinner_off_a_terminal_prints_dots() -> None:
    stream = io.StringIO()
    spinner = Spinner(stream)
    spinner.show("please wait...")
    for _ in range(3):
        spinner.update()
    spinner.hide()
    assert stream.getvalue() == "please wait... ....\n"


def test_runner_turns_failures_into_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    def fails() -> int:
        raise QubesVMNotHaltedError("Domain is running: %s", "work")

    def exits() -> int:
        raise SystemExit(2)

    assert run("qvm-x", fails) == 1
    assert capsys.readouterr().err == "qvm-x: error: Domain is running: work\n"
    assert run("qvm-x", exits) == 2
    assert run("qvm-x", lambda: None) == 0


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect(
            "dom0",
            "admin.vm.List",
            ok="dom0 class=AdminVM state=Running\nfedora-41 class=TemplateVM state=Halted\n"
            "fedora-41-xfce class=TemplateVM state=Halted\nwork class=AppVM state=Halted\n",
        )
        yield srv


def test_vm_names_with_wildcards_and_all(server: FakeAdminServer) -> None:
    parser = QubesArgumentParser("qvm-test", vmname_nargs="+")
    app = Qubes()

    def names(argv: list[str]) -> list[str]:
        return [vm.name for vm in parser.domains(app, parser.parse_args(argv))]

    assert names(["work", "fedora-*"]) == ["work", "fedora-41", "fedora-41-xfce"]
    assert names(["fedora-4?", "fedora-41"]) == ["fedora-41"]
    assert names(["--all"]) == ["fedora-41", "fedora-41-xfce", "work"]
    assert names(["--all", "--exclude", "work"]) == ["fedora-41", "fedora-41-xfce"]
    missing: list[str] = []
    args = parser.parse_args(["work", "ghost"])
    assert [vm.name for vm in parser.domains(app, args, missing=missing)] == ["work"]
    assert missing == ["ghost"]


def test_version_and_verbosity_options(capsys: pytest.CaptureFixture[str]) -> None:
    parser = QubesArgumentParser("qvm-test", vmname_nargs=1)
    args = parser.parse_args(["-v", "-v", "-q", "work"])
    assert (args.verbose, args.quiet, args.VMNAME) == (3, 1, ["work"])
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("qvm-test (Septa) ")
