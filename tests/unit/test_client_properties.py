"""Property values on the wire, and the Properties wrapper of one owner."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import septa.paths
from septa.client import errors
from septa.client.app import Qubes
from septa.client.properties import parse_default, parse_get_all, parse_property, unescape
from septa.client.testing import FakeAdminServer


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        yield srv


def test_parse_property_keeps_default_type_and_text() -> None:
    value = parse_property(b"default=False type=str hello world")
    assert (value.is_default, value.type, value.text) == (False, "str", "hello world")
    assert value.has_value and not value.is_none


def test_empty_reference_is_none_and_empty_scalar_has_no_value() -> None:
    vm_none = parse_property(b"default=True type=vm ")
    assert vm_none.is_none and vm_none.has_value and vm_none.display() == "None"
    unset = parse_property(b"default=True type=int ")
    assert not unset.has_value
    with pytest.raises(errors.QubesPropertyUnsetError):
        unset.as_int()
    assert parse_property(b"default=True type=int 42").as_int() == 42
    assert parse_property(b"default=True type=bool False").as_bool() is False


def test_bad_type_is_a_communication_error() -> None:
    with pytest.raises(errors.QubesDaemonCommunicationError, match="invalid value type"):
        parse_property(b"default=True type=float 1.5")


def test_get_all_lines_are_unescaped() -> None:
    data = (
        b"kernelopts default=False type=str a\\\\b\\nc\n"
        b"netvm default=True type=vm sys-net\n"
        b"xid default=True type=int -1\n"
    )
    values = parse_get_all(data)
    assert list(values) == ["kernelopts", "netvm", "xid"]
    assert values["kernelopts"].text == "a\\b\nc"
    assert values["netvm"].text == "sys-net" and values["netvm"].is_default
    assert unescape(b"plain") == b"plain"


def test_get_default_without_default_is_none() -> None:
    assert parse_default(b"") is None
    default = parse_default(b"type=int 2")
    assert default is not None and default.text == "2"


def test_vm_properties_use_the_vm_property_calls(server: FakeAdminServer) -> None:
    server.expect("work", "admin.vm.property.Get", "memory", ok="default=False type=int 400")
    server.expect("work", "admin.vm.property.Set", "netvm", b"", ok="")
    server.expect("work", "admin.vm.property.Reset", "memory", ok="")
    server.expect("work", "admin.vm.property.Help", "memory", ok="Memory in MiB")
    server.expect("work", "admin.vm.property.GetDefault", "memory", ok="type=int 400")
    server.expect("work", "admin.vm.property.List", ok="memory\nnetvm\n")
    vm = Qubes().domains.get_blind("work")
    assert vm.props.get("memory").text == "400"
    vm.props.set("netvm", None)
    vm.props.reset("memory")
    assert vm.props.help("memory") == "Memory in MiB"
    default = vm.props.get_default("memory")
    assert default is not None and default.text == "400"
    assert vm.props.names() == ["memory", "netvm"]
    assert server.requests() == [
        ("work", "admin.vm.property.Get", "memory"),
        ("work", "admin.vm.property.Set", "netvm"),
        ("work", "admin.vm.property.Reset", "memory"),
        ("work", "admin.vm.property.Help", "memory"),
        ("work", "admin.vm.property.GetDefault", "memory"),
        ("work", "admin.vm.property.List", None),
    ]
    assert server.unexpected == []


def test_fetch_all_serves_later_reads_from_the_cache(server: FakeAdminServer) -> None:
    server.expect(
        "dom0",
        "admin.property.GetAll",
        ok="default_netvm default=False type=vm sys-net\nclockvm default=True type=vm \n",
    )
    app = Qubes()
    app.props.fetch_all()
    assert app.props.get("default_netvm").text == "sys-net"
    assert app.props.is_default("clockvm")
    with pytest.raises(errors.QubesNoSuchPropertyError):
        app.props.get("nosuch")
    assert server.requests() == [("dom0", "admin.property.GetAll", None)]


def test_setting_a_property_drops_the_cache(server: FakeAdminServer) -> None:
    server.expect("dom0", "admin.property.GetAll", ok="updatevm default=True type=vm \n")
    server.expect("dom0", "admin.property.Set", "updatevm", b"sys-firewall", ok="")
    server.expect("dom0", "admin.property.Get", "updatevm", ok="default=False type=vm sys-firewall")
    app = Qubes()
    app.props.fetch_all()
    app.props.set("updatevm", "sys-firewall")
    assert app.props.get("updatevm").text == "sys-firewall"
    assert server.methods() == [
        "admin.property.GetAll",
        "admin.property.Set",
        "admin.property.Get",
    ]
