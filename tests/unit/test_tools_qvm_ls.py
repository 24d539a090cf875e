"""qvm-ls against a fake septad: exact output, exact calls, options and errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import septa.paths
from septa.client.testing import FakeAdminServer
from septa.tools import qvm_ls

VM_LIST = (
    "dom0 class=AdminVM state=Running uuid=0\n"
    "work class=AppVM state=Halted uuid=1\n"
    "sys-net class=AppVM state=Running uuid=2\n"
    "debian-12 class=TemplateVM state=Halted uuid=3\n"
)
PROPS = {
    "dom0": "label default=True type=label black\nupdateable default=True type=bool True\n",
    "work": "label default=False type=label red\ntemplate default=False type=vm debian-12\n"
    "netvm default=True type=vm sys-net\nvcpus default=True type=int 2\n"
    "kernelopts default=True type=str a\\\\b\\nc\nvirt_mode default=True type=str pvh\n"
    "provides_network default=True type=bool False\n",
    "sys-net": "label default=False type=label green\ntemplate default=False type=vm debian-12\n"
    "netvm default=False type=vm \nvcpus default=False type=int 10\n"
    "virt_mode default=False type=str hvm\n"
    "provides_network default=False type=bool True\n"
    "gateway default=True type=str 10.138.0.1\n",
    "debian-12": "label default=False type=label black\nnetvm default=False type=vm \n"
    "vcpus default=True type=int 2\nupdateable default=True type=bool True\n"
    "provides_network default=True type=bool False\n",
}


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect("dom0", "admin.vm.List", ok=VM_LIST)
        for name, props in PROPS.items():
            srv.expect(name, "admin.vm.property.GetAll", ok=props)
        yield srv


def test_default_columns_and_calls(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert qvm_ls.main([]) == 0
    out, err = capsys.readouterr()
    assert out == (
        "NAME       STATE    CLASS       LABEL  TEMPLATE   NETVM\n"
        "debian-12  Halted   TemplateVM  black  -          -\n"
        "dom0       Running  AdminVM     black  -          -\n"
        "sys-net    Running  AppVM       green  debian-12  -\n"
        "work       Halted   AppVM       red    debian-12  sys-net\n"
    )
    # the spinner: a prompt, one dot per cell and one for the head, then a newline
    assert err == "please wait... ." + "." * (1 + 4 * 6) + "\n"
    assert server.requests() == [("dom0", "admin.vm.List", None)] + [
        (name, "admin.vm.property.GetAll", None)
        for name in ("debian-12", "dom0", "sys-net", "work")
    ]
    assert server.unexpected == []


def test_raw_list_needs_only_the_qube_list(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert qvm_ls.main(["--raw-list"]) == 0
    assert capsys.readouterr() == ("debian-12\ndom0\nsys-net\nwork\n", "")
    assert server.methods() == ["admin.vm.List"]


def test_raw_data_with_fields(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert qvm_ls.main(["--raw-data", "-O", "name,state,kernelopts,ip", "work", "dom0"]) == 0
    assert capsys.readouterr().out == "dom0|Running|-|-\nwork|Halted|a\\b\nc|-\n"


def test_fields_flags_and_gateway(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert qvm_ls.main(["--no-spinner", "-O", "name,flags,gateway,virt-mode"]) == 0
    out, err = capsys.readouterr()
    assert out == (
        "NAME       FLAGS     GATEWAY     VIRT-MODE\n"
        "debian-12  t-U-----  -           -\n"
        "dom0       0rU-----  -           -\n"
        "sys-net    Ar-N----  -           hvm\n"
        "work       a-------  10.138.0.1  pvh\n"
    )
    assert err == ""


def test_sort_numeric_and_reverse(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert qvm_ls.main(["--no-spinner", "-O", "name,vcpus", "--sort", "vcpus", "--reverse"]) == 0
    assert capsys.readouterr().out == (
        "NAME       VCPUS\nsys-net    10\ndebian-12  2\nwork       2\ndom0       -\n"
    )


def test_network_tree(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert qvm_ls.main(["--no-spinner", "--tree", "-O", "name,netvm"]) == 0
    assert capsys.readouterr().out == (
        "NAME       NETVM\ndebian-12  -\ndom0       -\nsys-net    -\n└─work     sys-net\n"
    )


def test_filters(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("work", "admin.vm.tag.List", ok="project\n")
    server.expect("sys-net", "admin.vm.tag.List", ok="")
    cases = {
        ("--running",): "dom0\nsys-net\n",
        ("--class", "TemplateVM", "AdminVM"): "debian-12\ndom0\n",
        ("--label", "red", "green"): "sys-net\nwork\n",
        ("--template-source", "debian-12"): "sys-net\nwork\n",
        ("--template-source", ""): "debian-12\ndom0\n",
        ("--prefs", "vcpus=10"): "sys-net\n",
        ("--tags", "project", "--halted", "work", "sys-net"): "work\n",
        ("sys-*", "w?rk"): "sys-net\nwork\n",
        ("--all", "--exclude", "work"): "debian-12\ndom0\nsys-net\n",
    }
    for args, expected in cases.items():
        assert qvm_ls.main(["--raw-list", *args]) == 0, args
        assert capsys.readouterr().out == expected, args


def test_unknown_qube_is_a_usage_error(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert qvm_ls.main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: qvm-ls")
    assert err.endswith("qvm-ls: error: no such domain: 'nope'\n")


def test_exclude_needs_all(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert qvm_ls.main(["--exclude", "work"]) == 2
    assert capsys.readouterr().err.endswith("--exclude can only be used with --all\n")


def test_help_formats(capsys: pytest.CaptureFixture[str]) -> None:
    assert qvm_ls.main(["--help-formats"]) == 0
    assert capsys.readouterr().out == (
        "Available formats:\n"
        "  disk     NAME,STATE,DISK,PRIV-CURR,PRIV-MAX,PRIV-USED,ROOT-CURR,ROOT-MAX,ROOT-USED\n"
        "  full     NAME,STATE,CLASS,LABEL,QID,XID,UUID\n"
        "  kernel   NAME,STATE,CLASS,TEMPLATE,KERNEL,KERNELOPTS\n"
        "  network  NAME,STATE,NETVM,IP,IPBACK,GATEWAY\n"
        "  prefs    NAME,LABEL,TEMPLATE,NETVM,VCPUS,INITIALMEM,MAXMEM,VIRT_MODE\n"
        "  simple   NAME,STATE,CLASS,LABEL,TEMPLATE,NETVM\n"
        "\n"
    )


def test_help_columns_lists_every_defined_column(capsys: pytest.CaptureFixture[str]) -> None:
    assert qvm_ls.main(["--help-columns"]) == 0
    out = capsys.readouterr().out
    heads = [
        line.split()[0] for line in out.splitlines()[1:] if line.startswith("  ") and line[2] != " "
    ]
    assert heads == sorted(
        [
            "CLASS",
            "DISK",
            "FLAGS",
            "GATEWAY",
            "MEMORY",
            "PRIV-CURR",
            "PRIV-MAX",
            "PRIV-POOL",
            "PRIV-USED",
            "ROOT-CURR",
            "ROOT-MAX",
            "ROOT-POOL",
            "ROOT-USED",
            "STATE",
        ]
    )


def test_disk_format_reads_volumes(
    server: FakeAdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in PROPS:
        server.expect(name, "admin.vm.volume.List", ok="")
    server.expect("work", "admin.vm.volume.List", ok="private\n")
    server.expect(
        "work", "admin.vm.volume.Info", "private", ok="pool=lvm\nsize=2147483648\nusage=536870912\n"
    )
    assert (
        qvm_ls.main(
            [
                "--raw-data",
                "-O",
                "name,disk,priv-curr,priv-max,priv-used,priv-pool,root-used,root-pool",
                "work",
                "dom0",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == "dom0|0|0|0|0|-|0|-\nwork|512|512|2048|25%|lvm|0|-\n"


def test_daemon_not_running(capsys: pytest.CaptureFixture[str]) -> None:
    assert qvm_ls.main([]) == 1
    path = septa.paths.current().admin_socket
    assert capsys.readouterr().err == (
        f"qvm-ls: error: septad is not running (no socket at {path})\n"
    )
