"""qvm-volume against a fake septad: Qubes' tables, wire requests, messages and exit codes."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

import septa.paths
from septa.client.errors import QubesException
from septa.client.testing import FakeAdminServer
from septa.tools import qvm_volume
from septa.tools.sizes import parse_size

Capsys = pytest.CaptureFixture[str]

PRIVATE_INFO = (
    "pool=lvm\nvid=qubes_dom0/vm-work-private\nsize=2147483648\nusage=10000000\nrw=True\n"
    "source=\nsave_on_stop=True\nsnap_on_start=False\nrevisions_to_keep=-1\n"
    "ephemeral=False\nis_outdated=False\n"
)
ROOT_INFO = (
    "pool=lvm\nvid=qubes_dom0/vm-work-root\nsize=2147483648\nusage=10000000\nrw=True\n"
    "source=qubes_dom0/vm-debian-12-root\nsave_on_stop=False\nsnap_on_start=True\n"
    "revisions_to_keep=0\nis_outdated=True\n"
)


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect(
            "dom0",
            "admin.vm.List",
            ok="dom0 class=AdminVM state=Running\nwork class=AppVM state=Running\n"
            "sys-net class=AppVM state=Halted\n",
        )
        srv.expect("work", "admin.vm.volume.List", ok="root\nprivate\n")
        yield srv


def _listing(server: FakeAdminServer) -> None:
    server.expect("dom0", "admin.vm.volume.List", ok="")
    server.expect("sys-net", "admin.vm.volume.List", ok="root\nprivate\n")
    for vm in ("work", "sys-net"):
        for vol, pool in (("root", "pool-file"), ("private", "other-pool")):
            server.expect(
                vm, "admin.vm.volume.Info", vol, ok=f"pool={pool}\nvid={vm}-{vol}\nsize=1\n"
            )
            server.expect(
                vm, "admin.vm.volume.ListSnapshots", vol, ok="snap1\n" if vol == "private" else ""
            )
    server.expect("dom0", "admin.pool.List", ok="pool-file\nother-pool\n")


def test_list_all(server: FakeAdminServer, capsys: Capsys) -> None:
    _listing(server)
    expected = (
        "POOL:VOLUME                 VMNAME   VOLUME_NAME  REVERT_POSSIBLE\n"
        "other-pool:sys-net-private  sys-net  private      Yes\n"
        "other-pool:work-private     work     private      Yes\n"
        "pool-file:sys-net-root      sys-net  root         No\n"
        "pool-file:work-root         work     root         No\n"
    )
    assert qvm_volume.main(["ls"]) == 0
    assert capsys.readouterr() == (expected, "")
    assert qvm_volume.main([]) == 0
    assert capsys.readouterr() == (expected, "")
    assert server.unexpected == []


def test_list_qube_and_pool(server: FakeAdminServer, capsys: Capsys) -> None:
    _listing(server)
    assert qvm_volume.main(["list", "-p", "pool-file", "work"]) == 0
    assert capsys.readouterr().out == (
        "POOL:VOLUME          VMNAME  VOLUME_NAME  REVERT_POSSIBLE\n"
        "pool-file:work-root  work    root         No\n"
    )
    # only the volumes in the pool are asked for revisions
    snapshots = [r for r in server.requests() if r[1] == "admin.vm.volume.ListSnapshots"]
    assert snapshots == [("work", "admin.vm.volume.ListSnapshots", "root")]


def test_list_all_flag_and_shared_volumes(
    server: FakeAdminServer, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.expect("sys-net", "admin.vm.volume.List", ok="root\n")
    for vm in ("work", "sys-net"):
        server.expect(vm, "admin.vm.volume.Info", "root", ok="pool=p\nvid=shared\n")
        server.expect(vm, "admin.vm.volume.ListSnapshots", "root", ok="")
    server.expect("work", "admin.vm.volume.Info", "private", ok="pool=p\nvid=work-private\n")
    server.expect("work", "admin.vm.volume.ListSnapshots", "private", ok="")
    assert qvm_volume.main(["ls", "--all"]) == 0
    assert capsys.readouterr().out == (
        "POOL:VOLUME     VMNAME   VOLUME_NAME  REVERT_POSSIBLE\n"
        "p:shared        work     root         No\n"
        "p:shared        sys-net  root         No\n"
        "p:work-private  work     private      No\n"
    )
    assert ("dom0", "admin.vm.volume.List", None) not in server.requests()
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert qvm_volume.main(["ls", "--all"]) == 0
    assert capsys.readouterr().out.split("\n")[2] == "                sys-net  root         No"


def test_list_errors(server: FakeAdminServer, capsys: Capsys) -> None:
    server.expect("dom0", "admin.pool.List", ok="lvm\n")
    assert qvm_volume.main(["ls", "-p", "nope", "-p", "lvm"]) == 2
    assert capsys.readouterr().err.endswith("qvm-volume: error: No such pools: nope\n")
    assert qvm_volume.main(["ls", "ghost"]) == 2
    assert capsys.readouterr().err.endswith("qvm-volume: error: no such domain: 'ghost'\n")
    assert qvm_volume.main(["ls", "--exclude", "work"]) == 2
    assert "--exclude can only be used with --all" in capsys.readouterr().err


def test_info(server: FakeAdminServer, capsys: Capsys) -> None:
    server.expect("work", "admin.vm.volume.Info", "private", ok=PRIVATE_INFO)
    server.expect(
        "work", "admin.vm.volume.ListSnapshots", "private", ok="200101010000\n200201010000\n"
    )
    assert qvm_volume.main(["info", "work:private"]) == 0
    assert capsys.readouterr() == (
        "pool               lvm\n"
        "vid                qubes_dom0/vm-work-private\n"
        "rw                 True\n"
        "source             \n"
        "save_on_stop       True\n"
        "snap_on_start      False\n"
        "size               2147483648\n"
        "usage              10000000\n"
        "revisions_to_keep  -1 (snapshot disabled)\n"
        "ephemeral          False\n"
        "is_outdated        False\n"
        "List of available revisions (for revert):\n"
        "  200101010000\n"
        "  200201010000\n",
        "",
    )
    assert [r for r in server.requests() if r[1] == "admin.vm.volume.Info"] == [
        ("work", "admin.vm.volume.Info", "private")
    ]


def test_info_without_revisions_and_single_values(server: FakeAdminServer, capsys: Capsys) -> None:
    server.expect("work", "admin.vm.volume.Info", "root", ok=ROOT_INFO)
    server.expect("work", "admin.vm.volume.ListSnapshots", "root", ok="")
    assert qvm_volume.main(["i", "work:root"]) == 0
    out = capsys.readouterr().out
    assert "revisions_to_keep  0\nephemeral          False\nis_outdated        True\n" in out
    assert out.endswith("List of available revisions (for revert): none\n")
    for prop, value in [
        ("usage", "10000000"),
        ("source", "qubes_dom0/vm-debian-12-root"),
        ("snap_on_start", "True"),
        ("is_outdated", "True"),
        ("revisions", ""),
    ]:
        assert qvm_volume.main(["info", "work:root", prop]) == 0
        assert capsys.readouterr().out == (value + "\n" if value else "")
    assert qvm_volume.main(["info", "work:root", "colour"]) == 1
    assert capsys.readouterr() == ("", "Error: No such property: colour\n")


def test_volume_argument_errors(server: FakeAdminServer, capsys: Capsys) -> None:
    assert qvm_volume.main(["info", "work"]) == 2
    assert capsys.readouterr().err.endswith(
        "qvm-volume: error: expected a vm & volume combination like foo:bar\n"
    )
    assert qvm_volume.main(["info", "ghost:root"]) == 1
    assert capsys.readouterr().err == "qvm-volume: error: no vm 'ghost'\n"
    assert qvm_volume.main(["info", "work:swap"]) == 1
    assert capsys.readouterr().err == "qvm-volume: error: vm 'work' has no volume 'swap'\n"


def test_config(server: FakeAdminServer, capsys: Capsys) -> None:
    server.expect("work", "admin.vm.volume.Set.revisions_to_keep", "private", b"3", ok="")
    server.expect("work", "admin.vm.volume.Set.rw", "root", b"False", ok="")
    server.expect("work", "admin.vm.volume.Set.ephemeral", "root", b"True", ok="")
    assert qvm_volume.main(["set", "work:private", "revisions_to_keep", "3"]) == 0
    assert qvm_volume.main(["config", "work:root", "rw", "False"]) == 0
    assert qvm_volume.main(["c", "work:root", "ephemeral", "True"]) == 0
    assert server.unexpected == []
    assert qvm_volume.main(["s", "work:root", "size", "1"]) == 1
    assert capsys.readouterr() == ("", "Error: Invalid property: size\n")
    server.fail(
        "work",
        "admin.vm.volume.Set.rw",
        "private",
        exc="QubesValueError",
        message="Invalid value for rw",
    )
    assert qvm_volume.main(["set", "work:private", "rw", "maybe"]) == 1
    assert capsys.readouterr().err == "Error: Invalid value for rw\n"


def test_resize(server: FakeAdminServer, capsys: Capsys) -> None:
    server.expect("work", "admin.vm.volume.Info", "private", ok=PRIVATE_INFO)
    server.expect("work", "admin.vm.volume.Resize", "private", b"10737418240", ok="")
    server.expect("work", "admin.vm.volume.Resize", "private", b"1000000000", ok="")
    assert qvm_volume.main(["extend", "work:private", "10GiB"]) == 0
    assert qvm_volume.main(["resize", "work:private", "1G"]) == 1
    assert capsys.readouterr().err == (
        "Error: For your own safety, shrinking of private is disabled (1000000000 < 2147483648)."
        " If you really know what you are doing, resize filesystem manually first, then use"
        " `-f` option.\n"
    )
    before = len(server.calls)
    assert qvm_volume.main(["resize", "-f", "work:private", "1G"]) == 0
    assert [c.method for c in server.calls[before:]] == [
        "admin.vm.List",
        "admin.vm.volume.List",
        "admin.vm.volume.Resize",
    ]
    assert qvm_volume.main(["resize", "work:private", "lots"]) == 1
    assert capsys.readouterr().err == "Error: Invalid size: LOTS.\n"


def test_parse_size() -> None:
    assert parse_size("1024") == 1024
    assert parse_size(" 2 kib") == 2048
    assert parse_size("3Mi") == 3 * 1024**2
    assert parse_size("5GB") == 5 * 10**9
    assert parse_size("7k") == 7000
    with pytest.raises(QubesException):
        parse_size("1.5G")


def test_revert(server: FakeAdminServer, capsys: Capsys) -> None:
    server.expect("work", "admin.vm.volume.ListSnapshots", "private", ok="200101\n200201\n")
    server.expect("work", "admin.vm.volume.ListSnapshots", "root", ok="")
    server.expect("work", "admin.vm.volume.Revert", "private", b"200201", ok="")
    server.expect("work", "admin.vm.volume.Revert", "private", b"200101", ok="")
    assert qvm_volume.main(["revert", "work:private"]) == 0
    assert qvm_volume.main(["rv", "work:private", "200101"]) == 0
    assert [c.payload for c in server.calls if c.method == "admin.vm.volume.Revert"] == [
        b"200201",
        b"200101",
    ]
    assert qvm_volume.main(["r", "work:root"]) == 1
    assert capsys.readouterr() == ("", "Error: No snapshots available\n")


def test_clear(server: FakeAdminServer, capsys: Capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    server.expect("work", "admin.vm.volume.Clear", "private", ok="")
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert qvm_volume.main(["clear", "work:private"]) == 0
    assert capsys.readouterr().out == (
        "This will empty the volume! (Data may be preserved in a revision.)\n"
        "Are you sure? [y/N] Clear cancelled.\n"
    )
    assert "admin.vm.volume.Clear" not in server.methods()
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert qvm_volume.main(["clear", "work:private"]) == 0
    assert qvm_volume.main(["clear", "-f", "work:private"]) == 0
    assert server.methods().count("admin.vm.volume.Clear") == 2


# -- import ------------------------------------------------------------------------------

RECORDER = """#!/bin/sh
{ echo "$*"; echo "$QREXEC_REMOTE_DOMAIN $QREXEC_REQUESTED_TARGET"; cat; } > "$0.record"
printf '0\\000'
"""


def _service(root: Path, name: str) -> Path:
    path = root / "etc/qubes-rpc" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(RECORDER)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return Path(str(path) + ".record")


def test_import_file(server: FakeAdminServer, septa_root: Path, tmp_path: Path) -> None:
    record = _service(septa_root, "admin.vm.volume.ImportWithSize")
    data = tmp_path / "image"
    data.write_bytes(b"test-data")
    assert qvm_volume.main(["import", "work:private", str(data)]) == 0
    assert record.read_bytes() == b"private\ndom0 work\n9\ntest-data"
    assert qvm_volume.main(["import", "--size=512", "work:private", str(data)]) == 0
    assert record.read_bytes() == b"private\ndom0 work\n512\ntest-data"


def test_import_no_resize(server: FakeAdminServer, septa_root: Path, tmp_path: Path) -> None:
    record = _service(septa_root, "admin.vm.volume.Import")
    data = tmp_path / "image"
    data.write_bytes(b"test-data")
    assert qvm_volume.main(["import", "--no-resize", "work:root", str(data)]) == 0
    assert record.read_bytes() == b"root\ndom0 work\ntest-data"


def test_import_stdin(
    server: FakeAdminServer,
    septa_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Capsys,
) -> None:
    record = _service(septa_root, "admin.vm.volume.ImportWithSize")
    data = tmp_path / "image"
    data.write_bytes(b"from-stdin")
    with data.open("rb") as stream:
        monkeypatch.setattr("sys.stdin", SimpleNamespace(buffer=stream))
        assert qvm_volume.main(["import", "work:private", "-"]) == 0
    assert record.read_bytes() == b"private\ndom0 work\n10\nfrom-stdin"
    read_end, write_end = os.pipe()
    os.write(write_end, b"piped")
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        monkeypatch.setattr("sys.stdin", SimpleNamespace(buffer=pipe))
        assert qvm_volume.main(["import", "work:private", "-"]) == 1
        assert capsys.readouterr().err == (
            "Error: Failed to get standard input size (not a file), specify it explicitly "
            "with --size, or use --no-resize option\n"
        )
        assert qvm_volume.main(["import", "--size", "5", "work:private", "-"]) == 0
    assert record.read_bytes() == b"private\ndom0 work\n5\npiped"


def test_import_failures(
    server: FakeAdminServer, septa_root: Path, tmp_path: Path, capsys: Capsys
) -> None:
    data = tmp_path / "image"
    data.write_bytes(b"x")
    assert qvm_volume.main(["import", "work:private", str(data)]) == 1
    service = septa_root / "etc/qubes-rpc/admin.vm.volume.ImportWithSize"
    assert capsys.readouterr().err == f"Error: {service} not found\n"
    assert qvm_volume.main(["import", "work:private", str(tmp_path / "missing")]) == 1
    assert "No such file or directory" in capsys.readouterr().err
    service.parent.mkdir(parents=True)
    failing = "#!/bin/sh\ncat >/dev/null\nprintf '2\\000StoragePoolException\\000\\000full\\000'\n"
    service.write_text(failing)
    service.chmod(0o755)
    assert qvm_volume.main(["import", "work:private", str(data)]) == 1
    assert capsys.readouterr().err == "Error: full\n"
