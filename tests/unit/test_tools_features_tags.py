"""qvm-features and qvm-tags against a fake septad."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import septa.paths
from septa.client.testing import FakeAdminServer
from septa.tools import qvm_features, qvm_tags


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        srv.expect("dom0", "admin.vm.List", ok="work class=AppVM state=Halted\n")
        yield srv


def test_features_table(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("work", "admin.vm.feature.List", ok="service.cups\nos\nempty-one\n")
    server.expect("work", "admin.vm.feature.Get", "service.cups", ok="1")
    server.expect("work", "admin.vm.feature.Get", "os", ok="Linux")
    server.expect("work", "admin.vm.feature.Get", "empty-one", ok="")
    assert qvm_features.main(["work"]) == 0
    assert capsys.readouterr().out == ("service.cups  1\nos            Linux\nempty-one     \n")


def test_feature_get_set_unset(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("work", "admin.vm.feature.Get", "os", ok="Linux")
    server.fail(
        "work", "admin.vm.feature.Get", "gui", exc="QubesFeatureNotFoundError", message="gui"
    )
    server.expect("work", "admin.vm.feature.Set", "gui", b"1", ok="")
    server.expect("work", "admin.vm.feature.Remove", "os", ok="")
    server.fail(
        "work", "admin.vm.feature.Remove", "gui", exc="QubesFeatureNotFoundError", message="gui"
    )
    assert qvm_features.main(["work", "os"]) == 0
    assert qvm_features.main(["work", "gui"]) == 1
    assert qvm_features.main(["work", "gui", "1"]) == 0
    assert qvm_features.main(["work", "os", "--unset"]) == 0
    assert qvm_features.main(["-D", "work", "gui"]) == 0
    assert capsys.readouterr() == ("Linux\n", "")
    assert server.unexpected == []


def test_feature_errors(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.fail(
        "work", "admin.vm.feature.Set", "x", exc="QubesValueError", message="Invalid feature name"
    )
    assert qvm_features.main(["work", "x", "1"]) == 1
    assert capsys.readouterr().err == "qvm-features: error: Invalid feature name\n"
    assert qvm_features.main(["work", "--delete"]) == 2
    assert capsys.readouterr().err.endswith("qvm-features: error: --unset requires a feature\n")
    assert qvm_features.main(["work", "x", "1", "-D"]) == 2
    assert capsys.readouterr().err.endswith("error: cannot both set and unset a value\n")


def test_tags_list_and_query(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.expect("work", "admin.vm.tag.List", ok="zeta\nalpha\n")
    server.expect("work", "admin.vm.tag.Get", "alpha", ok="1")
    server.expect("work", "admin.vm.tag.Get", "beta", ok="0")
    assert qvm_tags.main(["work"]) == 0
    assert qvm_tags.main(["work", "ls"]) == 0
    assert qvm_tags.main(["work", "list", "alpha"]) == 0
    assert qvm_tags.main(["work", "l", "beta"]) == 1
    assert capsys.readouterr().out == "alpha\nzeta\nalpha\nzeta\nalpha\n"


def test_tags_add_and_delete(server: FakeAdminServer) -> None:
    for tag in ("a", "b"):
        server.expect("work", "admin.vm.tag.Set", tag, ok="")
    server.expect("work", "admin.vm.tag.Remove", "a", ok="")
    server.fail("work", "admin.vm.tag.Remove", "z", exc="QubesTagNotFoundError", message="z")
    assert qvm_tags.main(["work", "add", "a", "b"]) == 0
    assert qvm_tags.main(["work", "del", "a"]) == 0
    assert qvm_tags.main(["work", "unset", "z"]) == 0
    assert [r for r in server.requests() if r[1] != "admin.vm.List"] == [
        ("work", "admin.vm.tag.Set", "a"),
        ("work", "admin.vm.tag.Set", "b"),
        ("work", "admin.vm.tag.Remove", "a"),
        ("work", "admin.vm.tag.Remove", "z"),
    ]


def test_tags_errors(server: FakeAdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.fail("work", "admin.vm.tag.Set", "bad/tag", exc="QubesValueError", message="Invalid tag")
    assert qvm_tags.main(["work", "add", "bad/tag"]) == 1
    assert capsys.readouterr().err == "qvm-tags: error: Invalid tag\n"
    assert qvm_tags.main(["work", "add", "bad tag"]) == 1
    assert capsys.readouterr().err == (
        "qvm-tags: error: argument must not contain spaces or control characters: 'bad tag'\n"
    )
    assert qvm_tags.main(["work", "frobnicate"]) == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err
