"""qvm-pool against a fake septad: both syntaxes, tables, wire requests and exit codes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import septa.paths
from septa.client.app import Qubes
from septa.client.testing import FakeAdminServer
from septa.tools import qvm_pool

Capsys = pytest.CaptureFixture[str]


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect("dom0", "admin.pool.List", ok="varlibqubes\nlvm\n")
        srv.expect(
            "dom0",
            "admin.pool.Info",
            "varlibqubes",
            ok="dir_path=/var/lib/qubes\ndriver=file-reflink\nname=varlibqubes\n"
            "revisions_to_keep=1\n",
        )
        srv.expect(
            "dom0",
            "admin.pool.Info",
            "lvm",
            ok="driver=lvm_thin\nname=lvm\nthin_pool=pool00\nvolume_group=qubes_dom0\n",
        )
        yield srv


def test_list(server: FakeAdminServer, capsys: Capsys) -> None:
    expected = "NAME         DRIVER\nvarlibqubes  file-reflink\nlvm          lvm_thin\n"
    for argv in ([], ["list"], ["ls"], ["l"], ["-l"], ["--list"]):
        assert qvm_pool.main(argv) == 0
        assert capsys.readouterr() == (expected, "")
    assert server.unexpected == []


def test_drivers(server: FakeAdminServer, capsys: Capsys) -> None:
    server.expect(
        "dom0",
        "admin.pool.ListDrivers",
        ok="lvm_thin volume_group thin_pool revisions_to_keep\nfile dir_path revisions_to_keep\n",
    )
    expected = (
        "DRIVER    OPTIONS\n"
        "file      dir_path, revisions_to_keep\n"
        "lvm_thin  volume_group, thin_pool, revisions_to_keep\n"
    )
    for argv in (["drivers"], ["d"], ["--help-drivers"]):
        assert qvm_pool.main(argv) == 0
        assert capsys.readouterr().out == expected


def test_info(server: FakeAdminServer, capsys: Capsys) -> None:
    assert qvm_pool.main(["info", "lvm"]) == 0
    assert capsys.readouterr().out == (
        "name          lvm\n"
        "driver        lvm_thin\n"
        "thin_pool     pool00\n"
        "volume_group  qubes_dom0\n"
    )
    expected_two = (
        "name               lvm\n"
        "driver             lvm_thin\n"
        "thin_pool          pool00\n"
        "volume_group       qubes_dom0\n"
        "\n"
        "name               varlibqubes\n"
        "dir_path           /var/lib/qubes\n"
        "driver             file-reflink\n"
        "revisions_to_keep  1\n"
    )
    assert qvm_pool.main(["i", "lvm", "varlibqubes"]) == 0
    assert capsys.readouterr().out == expected_two
    assert qvm_pool.main(["-i", "lvm", "--info", "varlibqubes"]) == 0
    assert capsys.readouterr().out == expected_two
    assert qvm_pool.main(["info", "lvm", "nope"]) == 2
    assert capsys.readouterr().err.endswith("qvm-pool: error: No such pools: nope\n")


def test_add(server: FakeAdminServer, capsys: Capsys) -> None:
    payload = b"name=fast\ndir_path=/mnt/fast\nrevisions_to_keep=2\n"
    server.expect("dom0", "admin.pool.Add", "file", payload, ok="")
    argv = ["add", "fast", "file", "-o", "revisions_to_keep=2", "-o", "dir_path=/mnt/fast"]
    assert qvm_pool.main(argv) == 0
    legacy = ["-o", "dir_path=/mnt/fast,revisions_to_keep=2", "-a", "fast", "file"]
    assert qvm_pool.main(legacy) == 0
    assert server.requests() == [("dom0", "admin.pool.Add", "file")] * 2
    assert [c.payload for c in server.calls] == [payload] * 2
    assert capsys.readouterr() == ("", "")


def test_add_errors(server: FakeAdminServer, capsys: Capsys) -> None:
    server.fail("dom0", "admin.pool.Add", "nfs", exc="QubesException", message="unknown driver nfs")
    assert qvm_pool.main(["add", "p", "nfs"]) == 1
    assert capsys.readouterr().err == "qvm-pool: error: Failed to add pool p: unknown driver nfs\n"
    assert qvm_pool.main(["-a", "p", "nfs"]) == 2
    assert capsys.readouterr().err.endswith(
        "qvm-pool: error: Failed to add pool p: unknown driver nfs\n"
    )
    assert qvm_pool.main(["add", "p", "file", "-o", "dir_path"]) == 2
    assert capsys.readouterr().err.endswith(
        "qvm-pool: error: invalid option 'dir_path': expected opt=value\n"
    )
    assert qvm_pool.main(["add", "p"]) == 2


def test_remove(server: FakeAdminServer, capsys: Capsys) -> None:
    server.expect("dom0", "admin.pool.Remove", "a", ok="")
    server.fail(
        "dom0", "admin.pool.Remove", "b", exc="QubesPoolInUseError", message="pool b holds volumes"
    )
    server.expect("dom0", "admin.pool.Remove", "c", ok="")
    assert qvm_pool.main(["rm", "a", "b", "c"]) == 1
    assert capsys.readouterr().err == (
        "qvm-pool: error: Failed to remove pool b: pool b holds volumes\n"
    )
    assert server.requests() == [
        ("dom0", "admin.pool.Remove", "a"),
        ("dom0", "admin.pool.Remove", "b"),
        ("dom0", "admin.pool.Remove", "c"),
    ]
    assert qvm_pool.main(["remove", "a"]) == 0
    assert qvm_pool.main(["-r", "a"]) == 0


def test_set(server: FakeAdminServer, capsys: Capsys) -> None:
    server.expect("dom0", "admin.pool.Set.revisions_to_keep", "lvm", b"2", ok="")
    server.expect("dom0", "admin.pool.Set.ephemeral_volatile", "lvm", b"True", ok="")
    assert qvm_pool.main(["set", "lvm", "-o", "revisions_to_keep=2"]) == 0
    assert qvm_pool.main(["s", "lvm", "-o", "ephemeral_volatile=True"]) == 0
    assert qvm_pool.main(["-s", "lvm", "-o", "revisions_to_keep=2,ephemeral_volatile=True"]) == 0
    assert server.unexpected == []
    assert capsys.readouterr() == ("", "")


def test_set_errors(server: FakeAdminServer, capsys: Capsys) -> None:
    server.fail(
        "dom0",
        "admin.pool.Set.revisions_to_keep",
        "lvm",
        exc="QubesValueError",
        message="Invalid value",
    )
    assert qvm_pool.main(["set", "lvm", "-o", "driver=file", "-o", "revisions_to_keep=x"]) == 1
    assert capsys.readouterr().err == (
        "qvm-pool: error: Setting option driver is not supported for pool lvm\n"
        "Failed to set option revisions_to_keep for pool lvm: Invalid value\n"
    )
    assert qvm_pool.main(["set", "nope", "-o", "revisions_to_keep=1"]) == 1
    assert capsys.readouterr().err == "qvm-pool: error: No such pool nope\n"
    assert qvm_pool.main(["-s", "lvm", "-o", "driver=file"]) == 2
    assert capsys.readouterr().err.endswith(
        "qvm-pool: error: Setting option driver is not supported for pool lvm\n"
    )
    assert "admin.pool.Set.driver" not in server.methods()


def test_usage_details_and_volumes(server: FakeAdminServer) -> None:
    server.expect("dom0", "admin.pool.UsageDetails", "lvm", ok="data_size=1000\ndata_usage=250\n")
    server.expect("dom0", "admin.pool.volume.List", "lvm", ok="vm-work-private\nvm-work-root\n")
    pool = Qubes().pools["lvm"]
    assert pool.usage_details() == {"data_size": 1000, "data_usage": 250}
    assert pool.volume_ids() == ["vm-work-private", "vm-work-root"]
    assert pool.driver == "lvm_thin"
