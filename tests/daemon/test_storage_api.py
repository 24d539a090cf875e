"""Volume and pool calls over the socket (no qube is booted): formats, settings, errors."""

from __future__ import annotations

from tests.wire import Daemon


def make(septad: Daemon) -> None:
    septad.ok("admin.vm.Create.TemplateVM", payload=b"name=tpl label=black")
    septad.ok("admin.vm.Create.AppVM", arg="tpl", payload=b"name=app label=red")


def info(septad: Daemon, vm: str, volume: str) -> dict[str, str]:
    text = septad.ok("admin.vm.volume.Info", vm, arg=volume)
    return dict(line.split("=", 1) for line in text.splitlines())


def test_volumes_of_a_template_and_an_appvm(septad: Daemon) -> None:
    make(septad)
    assert septad.ok("admin.vm.volume.List", "app").split() == [
        "root", "private", "volatile", "kernel"]
    root = info(septad, "app", "root")
    assert root["snap_on_start"] == "True" and root["save_on_stop"] == "False"
    assert root["source"] == "vm-templates/tpl/root"
    private = info(septad, "app", "private")
    assert private["save_on_stop"] == "True" and private["pool"] == "varlibqubes"
    assert list(info(septad, "tpl", "root")) == [
        "pool", "vid", "size", "usage", "rw", "source", "path", "save_on_stop",
        "snap_on_start", "revisions_to_keep", "ephemeral", "is_outdated"]


def test_volume_settings_resize_and_clone(septad: Daemon) -> None:
    make(septad)
    septad.ok("admin.vm.volume.Set.revisions_to_keep", "app", b"3", "private")
    assert info(septad, "app", "private")["revisions_to_keep"] == "3"
    septad.ok("admin.vm.volume.Set.rw", "app", b"False", "volatile")
    assert info(septad, "app", "volatile")["rw"] == "False"
    assert septad.error("admin.vm.volume.Set.rw", "app", b"maybe", "volatile") == \
        "QubesValueError"
    size = int(info(septad, "app", "private")["size"])
    septad.ok("admin.vm.volume.Resize", "app", str(size * 2).encode(), "private")
    assert int(info(septad, "app", "private")["size"]) == size * 2
    assert septad.error("admin.vm.volume.Resize", "app", b"1", "private") == \
        "StoragePoolException"
    token = septad.ok("admin.vm.volume.CloneFrom", "app", arg="private")
    septad.ok("admin.vm.Create.AppVM", arg="tpl", payload=b"name=copy label=red")
    septad.ok("admin.vm.volume.CloneTo", "copy", token.encode(), "private")
    assert septad.error("admin.vm.volume.CloneTo", "copy", token.encode(), "private") == \
        "QubesValueError", "a clone token is good once"
    septad.stop()
    septad.start()
    assert info(septad, "app", "private")["revisions_to_keep"] == "3"
    assert info(septad, "app", "volatile")["rw"] == "False"
    assert septad.error("admin.vm.volume.Info", "app", arg="nope") == "StoragePoolException"


def test_pools(septad: Daemon) -> None:
    assert sorted(septad.ok("admin.pool.List").split()) == ["linux-kernel", "varlibqubes"]
    drivers = dict(line.split(" ", 1) for line in
                   septad.ok("admin.pool.ListDrivers").splitlines())
    assert {"file", "file-reflink", "lvm_thin", "linux-kernel"} <= set(drivers)
    second = septad.root / "second"
    septad.ok("admin.pool.Add", arg="file", payload=f"name=ext\ndir_path={second}\n".encode())
    assert "dir_path=" + str(second) in septad.ok("admin.pool.Info", arg="ext")
    septad.ok("admin.vm.Create.TemplateVM", payload=b"name=tpl label=black")
    septad.ok("admin.vm.CreateInPool.AppVM", arg="tpl", payload=b"name=far label=red pool=ext")
    assert info(septad, "far", "private")["pool"] == "ext"
    assert (second / "appvms" / "far").is_dir()
    assert septad.error("admin.pool.Remove", arg="ext") == "QubesException"
    septad.ok("admin.vm.Remove", "far")
    septad.ok("admin.pool.Remove", arg="ext")
    assert "ext" not in septad.ok("admin.pool.List").split()
    assert septad.error("admin.pool.Add", arg="nodriver", payload=b"name=x\n") == \
        "QubesValueError"
    assert septad.error("admin.vm.CreateInPool.AppVM", arg="tpl",
                        payload=b"name=y label=red pool=missing") == "QubesValueError"
    assert "y" not in septad.ok("admin.vm.List")


def test_create_disposable(septad: Daemon) -> None:
    make(septad)
    assert septad.error("admin.vm.CreateDisposable") == "QubesException"
    septad.ok("admin.vm.property.Set", "app", b"True", "template_for_dispvms")
    name = septad.ok("admin.vm.CreateDisposable", "app")
    assert name.startswith("disp") and septad.ok(
        "admin.vm.property.Get", name, arg="dispid").endswith(f" {name[4:]}")
    assert septad.ok("admin.vm.property.Get", name, arg="template") == \
        "default=False type=vm app"
    assert septad.ok("admin.vm.property.Get", name, arg="auto_cleanup").endswith("True")
    assert septad.ok("admin.vm.property.Get", name, arg="label").endswith("red")
    assert info(septad, name, "private")["source"] == info(septad, "app", "private")["vid"]
    assert info(septad, name, "root")["source"] == "vm-templates/tpl/root"
    septad.ok("admin.property.Set", arg="default_dispvm", payload=b"app")
    second = septad.ok("admin.vm.CreateDisposable")
    assert second.startswith("disp") and second != name
    septad.ok("admin.vm.Remove", name)
    septad.ok("admin.vm.Remove", second)
    assert "disp" not in septad.ok("admin.vm.List")
