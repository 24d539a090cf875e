"""qvm-prefs and qubes-prefs against a fake septad."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import septa.paths
from septa.client.testing import FakeAdminServer
from septa.tools import qubes_prefs, qvm_prefs

WORK_PROPS = (
    "label default=False type=label red\n"
    "netvm default=True type=vm sys-net\n"
    "default_dispvm default=True type=vm \n"
    "kernelopts default=True type=str \n"
    "stubdom_mem default=True type=int \n"
    "memory default=False type=int 800\n"
    "include_in_backups default=True type=bool True\n"
)


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect(
            "dom0",
            "admin.vm.List",
            ok="dom0 class=AdminVM state=Running\nwork class=AppVM state=Halted\n",
        )
        yield srv


def test_list_markers_padding_and_calls(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.expect(
        "work",
        "admin.vm.property.List",
        ok="label\nnetvm\ndefault_dispvm\nkernelopts\nstubdom_mem\nmemory\ninclude_in_backups\n",
    )
    server.expect("work", "admin.vm.property.GetAll", ok=WORK_PROPS)
    assert qvm_prefs.main(["work"]) == 0
    assert capsys.readouterr().out == (
        "default_dispvm      D  None\n"
        "include_in_backups  D  True\n"
        "kernelopts          D  \n"
        "label               -  red\n"
        "memory              -  800\n"
        "netvm               D  sys-net\n"
        "stubdom_mem         U\n"
    )
    assert server.requests() == [
        ("dom0", "admin.vm.List", None),
        ("work", "admin.vm.property.List", None),
        ("work", "admin.vm.property.GetAll", None),
    ]
    assert qvm_prefs.main(["--hide-default", "work"]) == 0
    assert capsys.readouterr().out == (
        "label               -  red\nmemory              -  800\nstubdom_mem         U\n"
    )


def test_get_values(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("work", "admin.vm.property.Get", "netvm", ok="default=True type=vm sys-net")
    server.expect("work", "admin.vm.property.Get", "default_dispvm", ok="default=True type=vm ")
    assert qvm_prefs.main(["work", "netvm"]) == 0
    assert qvm_prefs.main(["work", "default-dispvm"]) == 0
    assert qvm_prefs.main(["--hide-default", "work", "netvm"]) == 0
    assert capsys.readouterr().out == "sys-net\n"
    assert server.requests()[-2:] == [
        ("dom0", "admin.vm.List", None),
        ("work", "admin.vm.property.Get", "netvm"),
    ]


def test_set_and_reset(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("work", "admin.vm.property.Set", "netvm", b"", ok="")
    server.expect("work", "admin.vm.property.Set", "default_user", b"none", ok="")
    server.expect("work", "admin.vm.property.Set", "memory", b"1000", ok="")
    server.expect("work", "admin.vm.property.Reset", "memory", ok="")
    assert qvm_prefs.main(["work", "netvm", "None"]) == 0
    assert qvm_prefs.main(["work", "default_user", "none"]) == 0
    assert qvm_prefs.main(["--set", "work", "memory", "1000"]) == 0
    assert qvm_prefs.main(["work", "memory", "-D"]) == 0
    assert server.unexpected == []
    assert capsys.readouterr() == ("", "")


def test_errors(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.fail(
        "work",
        "admin.vm.property.Get",
        "nosuch",
        exc="QubesNoSuchPropertyError",
        message="Invalid property 'nosuch' of work",
    )
    server.fail(
        "work",
        "admin.vm.property.Set",
        "memory",
        exc="QubesPropertyValueError",
        message="memory must be an integer",
    )
    server.expect("work", "admin.vm.property.Get", "stubdom_mem", ok="default=True type=int ")
    assert qvm_prefs.main(["work", "nosuch"]) == 2
    assert capsys.readouterr().err.endswith("qvm-prefs: error: no such property: 'nosuch'\n")
    assert qvm_prefs.main(["work", "memory", "abc"]) == 1
    assert capsys.readouterr().err == "qvm-prefs: error: memory must be an integer\n"
    assert qvm_prefs.main(["work", "stubdom_mem"]) == 1
    assert capsys.readouterr().err == "qvm-prefs: error: property 'stubdom_mem' has no value\n"
    assert qvm_prefs.main([]) == 2
    assert "the following arguments are required: VMNAME" in capsys.readouterr().err
    assert qvm_prefs.main(["nope"]) == 2
    assert capsys.readouterr().err.endswith("qvm-prefs: error: no such domain: 'nope'\n")


def test_help_properties(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("work", "admin.vm.property.List", ok="vcpus\nlabel\n")
    server.expect("work", "admin.vm.property.Help", "vcpus", ok="Number of virtual CPUs")
    server.expect("work", "admin.vm.property.Help", "label", ok="Colourful label")
    assert qvm_prefs.main(["--help-properties", "work"]) == 0
    assert capsys.readouterr().out == (
        "  label  Colourful label\n  vcpus  Number of virtual CPUs\n"
    )


def test_qubes_prefs_uses_global_calls(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.expect("dom0", "admin.property.List", ok="default_netvm\nupdatevm\n")
    server.expect(
        "dom0",
        "admin.property.GetAll",
        ok="default_netvm default=False type=vm sys-net\nupdatevm default=True type=vm \n",
    )
    server.expect("dom0", "admin.property.Get", "default_netvm", ok="default=False type=vm sys-net")
    server.expect("dom0", "admin.property.Set", "default_dispvm", b"", ok="")
    server.expect("dom0", "admin.property.Reset", "updatevm", ok="")
    assert qubes_prefs.main([]) == 0
    assert qubes_prefs.main(["default_netvm"]) == 0
    assert qubes_prefs.main(["default_dispvm", "none"]) == 0
    assert qubes_prefs.main(["updatevm", "--default"]) == 0
    assert capsys.readouterr().out == (
        "default_netvm  -  sys-net\nupdatevm       D  None\nsys-net\n"
    )
    assert "admin.vm.List" not in server.methods()
    assert server.unexpected == []
