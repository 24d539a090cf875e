"""Cloning: the exact calls, what is skipped, and the clean-up after a failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import septa.paths
from septa.client import errors
from septa.client.app import Qubes
from septa.client.clone import clone_vm
from septa.client.firewall import Rule
from septa.client.testing import ANY, FakeAdminServer

SRC_PROPS = (
    "name default=False type=str work\n"
    "qid default=False type=int 3\n"
    "uuid default=False type=str 1111\n"
    "label default=False type=label red\n"
    "template default=False type=vm debian-12\n"
    "memory default=False type=int 800\n"
    "netvm default=False type=vm \n"
    "vcpus default=True type=int 2\n"
    "stubdom_mem default=False type=int \n"
    "installed_by_rpm default=False type=bool False\n"
)


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect(
            "dom0",
            "admin.vm.List",
            ok="work class=AppVM state=Halted\ncopy class=AppVM state=Halted\n",
        )
        srv.expect(
            "work", "admin.vm.property.Get", "template", ok="default=False type=vm debian-12"
        )
        srv.expect("work", "admin.vm.property.Get", "label", ok="default=False type=label red")
        srv.expect("work", "admin.vm.volume.List", ok="")
        srv.expect("copy", "admin.vm.volume.List", ok="")
        srv.expect("dom0", "admin.vm.Create.AppVM", "debian-12", b"name=copy label=red", ok="")
        srv.expect("work", "admin.vm.property.GetAll", ok=SRC_PROPS)
        srv.expect("copy", "admin.vm.property.Set", ANY, ok="")
        srv.expect("work", "admin.vm.tag.List", ok="created-by-dom0\nproject\n")
        srv.expect("copy", "admin.vm.tag.Set", "project", ok="")
        srv.expect("work", "admin.vm.feature.List", ok="os\npreload-dispvm\npreload-dispvm-max\n")
        srv.expect("work", "admin.vm.feature.Get", "os", ok="Linux")
        srv.expect("work", "admin.vm.feature.Get", "preload-dispvm", ok="disp1")
        srv.expect("work", "admin.vm.feature.Get", "preload-dispvm-max", ok="2")
        srv.expect("copy", "admin.vm.feature.Set", ANY, ok="")
        srv.expect("work", "admin.vm.notes.Get", ok="remember")
        srv.expect("copy", "admin.vm.notes.Set", None, b"remember", ok="")
        srv.expect(
            "work",
            "admin.vm.firewall.Get",
            ok="action=accept dst4=10.0.0.1 proto=tcp dstports=443 comment=a b\naction=drop\n",
        )
        srv.expect("copy", "admin.vm.firewall.Set", ok="")
        yield srv


def test_clone_copies_settings_in_qubes_order(server: FakeAdminServer) -> None:
    clone_vm(Qubes(), "work", "copy")
    assert server.unexpected == []
    sets = [(c.dest, c.method, c.arg, c.payload) for c in server.calls if c.dest == "copy"]
    assert sets == [
        ("copy", "admin.vm.property.Set", "memory", b"800"),
        ("copy", "admin.vm.property.Set", "netvm", b""),
        ("copy", "admin.vm.tag.Set", "project", b""),
        ("copy", "admin.vm.feature.Set", "os", b"Linux"),
        ("copy", "admin.vm.feature.Set", "preload-dispvm-max", b"2"),
        ("copy", "admin.vm.notes.Set", None, b"remember"),
        (
            "copy",
            "admin.vm.firewall.Set",
            None,
            b"action=accept proto=tcp dst4=10.0.0.1/32 dstports=443-443 comment=a b\naction=drop\n",
        ),
        ("copy", "admin.vm.volume.List", None, b""),
    ]


def test_failed_step_removes_the_half_made_clone(server: FakeAdminServer) -> None:
    server.fail("copy", "admin.vm.tag.Set", "project", exc="QubesValueError", message="bad tag")
    server.expect("copy", "admin.vm.Remove", ok="")
    with pytest.raises(errors.QubesValueError, match="bad tag"):
        clone_vm(Qubes(), "work", "copy")
    assert server.requests()[-1] == ("copy", "admin.vm.Remove", None)


def test_ignore_errors_goes_on_after_a_failed_step(server: FakeAdminServer) -> None:
    server.fail("copy", "admin.vm.tag.Set", "project", exc="QubesValueError", message="bad tag")
    clone_vm(Qubes(), "work", "copy", ignore_errors=True)
    assert "admin.vm.Remove" not in server.methods()
    assert "admin.vm.firewall.Set" in server.methods()


def test_persistent_volumes_are_cloned_and_failure_removes(server: FakeAdminServer) -> None:
    info = "pool=p\nvid=v\nsize=1\nusage=1\nrw=True\nsave_on_stop={}\nsnap_on_start={}\n"
    server.expect("work", "admin.vm.volume.List", ok="private\nroot\n")
    server.expect("copy", "admin.vm.volume.List", ok="private\nroot\n")
    server.expect("work", "admin.vm.volume.Info", "private", ok=info.format(True, False))
    server.expect("work", "admin.vm.volume.Info", "root", ok=info.format(False, True))
    server.expect("copy", "admin.vm.volume.Info", "private", ok=info.format(True, False))
    server.expect("copy", "admin.vm.volume.Info", "root", ok=info.format(False, True))
    server.expect(
        "dom0", "admin.property.Get", "default_pool_private", ok="default=True type=str p"
    )
    server.expect("work", "admin.vm.volume.CloneFrom", "private", ok="tok")
    server.fail(
        "copy",
        "admin.vm.volume.CloneTo",
        "private",
        b"tok",
        exc="StoragePoolException",
        message="disk full",
    )
    server.expect("copy", "admin.vm.Remove", ok="")
    with pytest.raises(errors.StoragePoolException, match="disk full"):
        clone_vm(Qubes(), "work", "copy")
    assert server.requests()[-3:] == [
        ("work", "admin.vm.volume.CloneFrom", "private"),
        ("copy", "admin.vm.volume.CloneTo", "private"),
        ("copy", "admin.vm.Remove", None),
    ]


def test_rules_are_normalised_like_qubes_writes_them() -> None:
    rule = Rule.parse(
        "action=accept expire=1700000000 dst6=::/0 proto=udp dstports=53 comment=with spaces"
    )
    assert (
        rule.to_wire() == "action=accept proto=udp dstports=53-53 expire=1700000000 "
        "comment=with spaces"
    )
    host = Rule.parse("action=drop dsthost=example.com proto=icmp icmptype=8")
    assert host.to_wire() == "action=drop proto=icmp dsthost=example.com icmptype=8"
    with pytest.raises(errors.QubesValueError):
        Rule.parse("proto=tcp")
