"""The client object model: qubes, labels, creation, features, tags, notes, volumes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import septa.paths
from septa.client import errors
from septa.client.app import Qubes
from septa.client.bulk import fetch_all_properties
from septa.client.dependencies import vm_dependencies
from septa.client.testing import FakeAdminServer

VM_LIST = (
    "dom0 class=AdminVM state=Running uuid=00000000-0000-0000-0000-000000000000\n"
    "work class=AppVM state=Halted uuid=11111111-1111-1111-1111-111111111111\n"
    "sys-net class=AppVM state=Running uuid=22222222-2222-2222-2222-222222222222\n"
)


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect("dom0", "admin.vm.List", ok=VM_LIST)
        yield srv


def test_domains_are_listed_sorted_with_class(server: FakeAdminServer) -> None:
    app = Qubes()
    assert app.domains.names() == ["dom0", "sys-net", "work"]
    assert [vm.klass for vm in app.domains] == ["AdminVM", "AppVM", "AppVM"]
    assert "work" in app.domains and "nope" not in app.domains
    assert app.domains.info("work")["uuid"] == "11111111-1111-1111-1111-111111111111"
    assert server.requests() == [("dom0", "admin.vm.List", None)]


def test_unknown_domain_raises_not_found(server: FakeAdminServer) -> None:
    with pytest.raises(errors.QubesVMNotFoundError, match="no such domain: 'nope'"):
        Qubes().domains["nope"]


def test_power_state_comes_from_the_list_only_when_caching(server: FakeAdminServer) -> None:
    server.expect(
        "work", "admin.vm.CurrentState", ok="mem=0 mem_static_max=0 cputime=0 power_state=Paused"
    )
    app = Qubes()
    assert app.domains["work"].get_power_state() == "Paused"
    cached = Qubes()
    cached.cache_enabled = True
    assert cached.domains["work"].get_power_state() == "Halted"
    assert server.methods().count("admin.vm.CurrentState") == 1


def test_state_helpers_read_current_state(server: FakeAdminServer) -> None:
    server.expect(
        "sys-net",
        "admin.vm.CurrentState",
        ok="mem=409600 mem_static_max=4096000 cputime=5 power_state=Running",
    )
    vm = Qubes().domains["sys-net"]
    assert vm.is_running() and not vm.is_halted() and not vm.is_paused()
    assert vm.get_mem() == 409600


def test_add_new_vm_sends_create_with_template_and_label(server: FakeAdminServer) -> None:
    server.expect("dom0", "admin.vm.Create.AppVM", "debian-12", b"name=work label=red", ok="")
    vm = Qubes().add_new_vm("AppVM", "work", "red", "debian-12")
    assert vm.name == "work"
    assert server.requests()[0] == ("dom0", "admin.vm.Create.AppVM", "debian-12")
    assert server.unexpected == []


def test_add_new_vm_in_pools_uses_create_in_pool(server: FakeAdminServer) -> None:
    server.expect(
        "dom0",
        "admin.vm.CreateInPool.AppVM",
        None,
        b"name=work label=red pool:private=fast pool:volatile=tmp",
        ok="",
    )
    server.expect(
        "dom0", "admin.vm.CreateInPool.StandaloneVM", None, b"name=work label=red pool=fast", ok=""
    )
    app = Qubes()
    app.add_new_vm("AppVM", "work", "red", pools={"volatile": "tmp", "private": "fast"})
    app.add_new_vm("StandaloneVM", "work", "red", pool="fast")
    assert server.unexpected == []
    with pytest.raises(errors.QubesValueError):
        app.add_new_vm("AppVM", "a b", "red")


def test_labels_by_name_or_index(server: FakeAdminServer) -> None:
    server.expect("dom0", "admin.label.List", ok="red\norange\nyellow\n")
    for index, name in enumerate(["red", "orange", "yellow"], start=1):
        server.expect("dom0", "admin.label.Index", name, ok=str(index))
    server.expect("dom0", "admin.label.Get", "orange", ok="0xf57900")
    app = Qubes()
    assert app.get_label("yellow").name == "yellow"
    assert app.get_label("2").name == "orange"
    assert app.get_label("2").color == "0xf57900"
    with pytest.raises(errors.QubesLabelNotFoundError):
        app.get_label("9")


def test_label_create_and_remove(server: FakeAdminServer) -> None:
    server.expect("dom0", "admin.label.Create", "pink", b"0xff00ff", ok="")
    server.expect("dom0", "admin.label.Remove", "pink", ok="")
    app = Qubes()
    assert app.labels.create("pink", "0xff00ff").name == "pink"
    app.labels.remove("pink")
    assert server.unexpected == []


def test_features_tags_and_notes_calls(server: FakeAdminServer) -> None:
    server.expect("work", "admin.vm.feature.List", ok="os\nservice.cups\n")
    server.expect("work", "admin.vm.feature.Get", "os", ok="Linux")
    server.expect("work", "admin.vm.feature.Get", "service.cups", ok="")
    server.fail(
        "work", "admin.vm.feature.Get", "gui", exc="QubesFeatureNotFoundError", message="gui"
    )
    server.expect("work", "admin.vm.feature.Set", "gui", b"1", ok="")
    server.expect("work", "admin.vm.feature.Set", "audio", b"", ok="")
    server.expect("work", "admin.vm.feature.CheckWithTemplate", "os", ok="Linux")
    server.expect("work", "admin.vm.tag.List", ok="b\na\n")
    server.expect("work", "admin.vm.tag.Get", "a", ok="1")
    server.expect("work", "admin.vm.tag.Get", "z", ok="0")
    server.fail("work", "admin.vm.tag.Remove", "z", exc="QubesTagNotFoundError", message="z")
    server.expect("work", "admin.vm.notes.Get", ok="some\nnotes")
    server.expect("work", "admin.vm.notes.Set", None, "new ✓".encode(), ok="")
    vm = Qubes().domains.get_blind("work")
    assert vm.features.items() == [("os", "Linux"), ("service.cups", "")]
    assert vm.features.get("gui", "none") == "none"
    vm.features["gui"] = True
    vm.features["audio"] = False
    assert vm.features.check_with_template("os") == "Linux"
    assert list(vm.tags) == ["b", "a"]
    assert "a" in vm.tags and "z" not in vm.tags
    vm.tags.discard("z")
    assert vm.get_notes() == "some\nnotes"
    vm.set_notes("new ✓")
    assert server.unexpected == []


def test_volumes_info_and_clone(server: FakeAdminServer) -> None:
    info = (
        "pool=varlibqubes\nvid=appvms/{}/private\nsize=2147483648\nusage=1048576\n"
        "rw=True\nsave_on_stop=True\nsnap_on_start=False\n"
    )
    for name in ("work", "copy"):
        server.expect(name, "admin.vm.volume.List", ok="private\nroot\n")
        server.expect(name, "admin.vm.volume.Info", "private", ok=info.format(name))
    server.expect("work", "admin.vm.volume.CloneFrom", "private", ok="token123")
    server.expect("copy", "admin.vm.volume.CloneTo", "private", b"token123", ok="")
    app = Qubes()
    src, dst = app.domains.get_blind("work"), app.domains.get_blind("copy")
    volume = src.volumes["private"]
    assert (volume.pool, volume.size, volume.usage, volume.rw) == (
        "varlibqubes",
        2147483648,
        1048576,
        True,
    )
    dst.volumes["private"].clone_from(src.volumes["private"])
    assert server.requests()[-2:] == [
        ("work", "admin.vm.volume.CloneFrom", "private"),
        ("copy", "admin.vm.volume.CloneTo", "private"),
    ]
    assert server.unexpected == []


def test_vm_dependencies_lists_global_and_explicit_uses(server: FakeAdminServer) -> None:
    server.expect(
        "dom0",
        "admin.property.GetAll",
        ok="default_netvm default=False type=vm sys-net\nupdatevm default=False type=vm work\n",
    )
    server.expect("dom0", "admin.vm.property.GetAll", ok="label default=True type=label black\n")
    server.expect(
        "work",
        "admin.vm.property.GetAll",
        ok="netvm default=False type=vm sys-net\ntemplate default=False type=vm t\n",
    )
    app = Qubes()
    users = vm_dependencies(app, app.domains["sys-net"])
    assert [(h.name if h else None, p) for h, p in users] == [
        (None, "default_netvm"),
        ("work", "netvm"),
    ]


def test_bulk_fetch_fills_every_cache(server: FakeAdminServer) -> None:
    names = [f"vm{i:02d}" for i in range(40)]
    server.expect(
        "dom0", "admin.vm.List", ok="".join(f"{n} class=AppVM state=Halted\n" for n in names)
    )
    for n in names:
        server.expect(n, "admin.vm.property.GetAll", ok=f"name default=False type=str {n}\n")
    app = Qubes()
    vms = app.domains.values()
    fetch_all_properties(vms)
    assert all(vm.props.cached("name") is not None for vm in vms)
    assert [vm.props.get("name").text for vm in vms] == names
    assert sorted(c.dest for c in server.calls if c.method.endswith("GetAll")) == names
