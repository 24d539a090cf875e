"""qvm-create against a fake septad: payloads, checks, exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import septa.paths
from septa.client.testing import FakeAdminServer
from septa.tools import qvm_create


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect("dom0", "admin.label.List", ok="red\nyellow\nblue\n")
        srv.expect("dom0", "admin.vm.List", ok="new class=AppVM state=Halted\n")
        yield srv


def test_create_appvm(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("dom0", "admin.vm.Create.AppVM", None, b"name=new label=red", ok="")
    assert qvm_create.main(["-l", "red", "new"]) == 0
    assert server.requests() == [
        ("dom0", "admin.label.List", None),
        ("dom0", "admin.vm.Create.AppVM", None),
        ("dom0", "admin.vm.List", None),
    ]
    assert capsys.readouterr() == ("", "")


def test_template_and_properties(server: FakeAdminServer) -> None:
    server.expect("dom0", "admin.vm.Create.AppVM", "debian-12", b"name=new label=blue", ok="")
    server.expect("new", "admin.vm.property.Set", "netvm", b"sys-whonix", ok="")
    server.expect("new", "admin.vm.property.Set", "vcpus", b"4", ok="")
    argv = [
        "-t",
        "debian-12",
        "--label",
        "blue",
        "--prop",
        "netvm=sys-whonix",
        "--property",
        "vcpus=4",
        "new",
    ]
    assert qvm_create.main(argv) == 0
    assert server.unexpected == []
    assert server.methods()[-2:] == ["admin.vm.property.Set", "admin.vm.property.Set"]


def test_pools(server: FakeAdminServer) -> None:
    server.expect(
        "dom0", "admin.vm.CreateInPool.AppVM", None, b"name=new label=red pool=fast", ok=""
    )
    server.expect(
        "dom0",
        "admin.vm.CreateInPool.AppVM",
        None,
        b"name=new label=red pool:private=fast pool:volatile=tmp",
        ok="",
    )
    assert qvm_create.main(["-l", "red", "-P", "fast", "new"]) == 0
    assert (
        qvm_create.main(["-l", "red", "--pool", "volatile=tmp", "-p", "private=fast", "new"]) == 0
    )
    assert server.unexpected == []


def test_label_by_index_is_sent_by_name(server: FakeAdminServer) -> None:
    for index, name in enumerate(["red", "yellow", "blue"], start=1):
        server.expect("dom0", "admin.label.Index", name, ok=str(index))
    server.expect("dom0", "admin.vm.Create.AppVM", None, b"name=new label=blue", ok="")
    assert qvm_create.main(["-l", "3", "new"]) == 0
    assert server.unexpected == []


def test_disp_and_standalone_shortcuts(server: FakeAdminServer) -> None:
    server.expect("dom0", "admin.vm.Create.DispVM", "dvm", b"name=new label=red", ok="")
    server.expect("dom0", "admin.vm.Create.StandaloneVM", None, b"name=new label=red", ok="")
    assert qvm_create.main(["--disp", "-t", "dvm", "new"]) == 0
    assert qvm_create.main(["--standalone", "-l", "red", "new"]) == 0
    assert server.unexpected == []


def test_standalone_from_template_is_a_clone(server: FakeAdminServer) -> None:
    server.expect(
        "dom0",
        "admin.vm.List",
        ok="tpl class=TemplateVM state=Halted\nnew class=StandaloneVM state=Halted\n",
    )
    server.fail(
        "tpl",
        "admin.vm.property.Get",
        "template",
        exc="QubesNoSuchPropertyError",
        message="no template",
    )
    server.expect("tpl", "admin.vm.property.Get", "label", ok="default=False type=label black")
    server.expect("tpl", "admin.vm.volume.List", ok="")
    server.expect("dom0", "admin.vm.Create.StandaloneVM", None, b"name=new label=black", ok="")
    server.expect("tpl", "admin.vm.property.GetAll", ok="label default=False type=label black\n")
    server.expect("tpl", "admin.vm.tag.List", ok="")
    server.expect("tpl", "admin.vm.feature.List", ok="")
    server.expect("tpl", "admin.vm.notes.Get", ok="")
    server.expect("tpl", "admin.vm.firewall.Get", ok="action=accept\n")
    server.expect("new", "admin.vm.firewall.Set", None, b"action=accept\n", ok="")
    server.expect("new", "admin.vm.volume.List", ok="")
    server.expect("new", "admin.vm.property.Set", "label", b"red", ok="")
    assert qvm_create.main(["-C", "StandaloneVM", "-t", "tpl", "-l", "red", "new"]) == 0
    assert server.unexpected == []
    assert server.requests()[-1] == ("new", "admin.vm.property.Set", "label")


def test_usage_errors(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert qvm_create.main(["new"]) == 2
    assert capsys.readouterr().err.endswith("qvm-create: error: --label option is mandatory\n")
    assert qvm_create.main(["-l", "red"]) == 2
    assert capsys.readouterr().err.endswith("qvm-create: error: VMNAME is mandatory\n")
    assert qvm_create.main(["-l", "pink", "new"]) == 2
    assert capsys.readouterr().err.endswith(
        "qvm-create: error: no such label: 'pink'; available: red, yellow, blue\n"
    )
    assert qvm_create.main(["-l", "red", "-p", "novolume", "new"]) == 2
    assert capsys.readouterr().err.endswith(
        "error: Pool argument must be of form: -p volume_name=pool_name\n"
    )
    image = tmp_path / "root.img"
    image.write_bytes(b"x")
    assert qvm_create.main(["-l", "red", "--root-copy-from", str(image), "new"]) == 2
    assert "does not have its own 'root' volume" in capsys.readouterr().err
    assert "admin.vm.Create.AppVM" not in server.methods()


def test_create_failure_exits_1_and_logs(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.fail(
        "dom0",
        "admin.vm.Create.AppVM",
        exc="QubesValueError",
        message="VM name 'new' already exists",
    )
    assert qvm_create.main(["-l", "red", "new"]) == 1
    assert capsys.readouterr().err == "app: Error creating VM: VM name 'new' already exists\n"
    assert qvm_create.main(["-q", "-l", "red", "new"]) == 1
    assert capsys.readouterr().err == "Error creating VM: VM name 'new' already exists\n"


def test_property_failure_exits_2(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.expect("dom0", "admin.vm.Create.AppVM", ok="")
    server.fail(
        "new",
        "admin.vm.property.Set",
        "vcpus",
        exc="QubesPropertyValueError",
        message="vcpus must be positive",
    )
    assert qvm_create.main(["-l", "red", "--prop", "vcpus=0", "new"]) == 2
    assert capsys.readouterr().err == (
        "app: Error setting property vcpus (but VM created): vcpus must be positive\n"
    )


def test_root_image_without_volumes_exits_3(
    server: FakeAdminServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "root.img"
    image.write_bytes(b"data")
    server.expect("dom0", "admin.vm.Create.StandaloneVM", ok="")
    server.expect("new", "admin.vm.volume.List", ok="")
    assert qvm_create.main(["-C", "StandaloneVM", "-l", "red", "-r", str(image), "new"]) == 3
    assert "Error importing root volume (but VM created)" in capsys.readouterr().err
    assert image.exists()


def test_help_classes(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("dom0", "admin.vmclass.List", ok="TemplateVM\nAppVM\nAdminVM\n")
    assert qvm_create.main(["--help-classes"]) == 0
    assert capsys.readouterr().out == "AdminVM\nAppVM\nTemplateVM\n"
