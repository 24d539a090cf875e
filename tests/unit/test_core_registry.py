"""Registry semantics: classes, defaults and inheritance, validation, in-use checks, events."""

from __future__ import annotations

from typing import Any

import pytest

from septa import paths
from septa.core import store
from septa.core.app import Qubes
from septa.core.errors import (
    QubesFeatureNotFoundError,
    QubesNoSuchPropertyError,
    QubesPropertyValueError,
    QubesValueError,
    QubesVMInUseError,
)
from septa.core.names import validate_name


@pytest.fixture
def app() -> Qubes:
    registry = store.load(paths.current())
    tpl = registry.create_vm("TemplateVM", "debian-12", "black")
    registry.set("default_template", tpl)
    registry.create_vm("AppVM", "net", "red", properties={"provides_network": "True"})
    registry.create_vm("AppVM", "work", "blue")
    return registry


def test_fresh_registry_has_dom0_and_eight_labels(app: Qubes) -> None:
    dom0 = app.domains["dom0"]
    assert dom0.qid == 0 and type(dom0).__name__ == "AdminVM"
    assert [lab.name for lab in app.labels] == [
        "red", "orange", "yellow", "green", "gray", "blue", "purple", "black"]
    assert app.labels["red"].color == "0xcc0000"


def test_template_values_are_inherited_until_set(app: Qubes) -> None:
    work, tpl = app.domains["work"], app.domains["debian-12"]
    assert work.get("memory") == 400 and work.property_is_default("memory")
    tpl.set("memory", 1000)
    assert work.get("memory") == 1000
    work.set("memory", 600)
    assert work.get("memory") == 600 and not work.property_is_default("memory")
    work.reset("memory")
    assert work.get("memory") == 1000


def test_global_defaults_flow_to_qubes(app: Qubes) -> None:
    work, net = app.domains["work"], app.domains["net"]
    assert work.get("netvm") is None and work.get("ip") is None
    app.set("default_netvm", net)
    assert work.get("netvm") is net
    assert work.get("ip") == f"10.137.0.{work.qid}"
    assert net.get("netvm") is None, "a network provider does not get default_netvm"
    assert work.get("visible_gateway") == net.get("ip")


def test_netvm_must_provide_network_and_not_loop(app: Qubes) -> None:
    work, net = app.domains["work"], app.domains["net"]
    with pytest.raises(QubesPropertyValueError, match="does not provide network"):
        work.set("netvm", app.domains["debian-12"])
    with pytest.raises(QubesPropertyValueError, match="Loops"):
        net.set("netvm", net)


def test_name_is_write_once_and_unknown_property_is_refused(app: Qubes) -> None:
    work = app.domains["work"]
    with pytest.raises(QubesPropertyValueError, match="cannot be changed"):
        work.set_text("name", "other")
    with pytest.raises(QubesPropertyValueError):
        work.reset("name")
    with pytest.raises(QubesNoSuchPropertyError):
        work.get("no_such_property")


@pytest.mark.parametrize("prop,text", [("memory", "-5"), ("memory", "lots"), ("vcpus", "0"),
                                        ("autostart", "maybe"), ("virt_mode", "xen"),
                                        ("mac", "zz:00"), ("ip", "300.1.1.1"),
                                        ("template", "work"), ("label", "pink")])
def test_bad_values_are_refused_and_change_nothing(app: Qubes, prop: str, text: str) -> None:
    work = app.domains["work"]
    before = store.to_xml(app)
    with pytest.raises(QubesValueError):
        work.set_text(prop, text)
    assert store.to_xml(app) == before


@pytest.mark.parametrize("name", ["", "1abc", "-x", "a b", "a/b", "x" * 32, "none", "default",
                                  "foo-dm", "Domain-0", "é"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(QubesValueError):
        validate_name(name)


def test_valid_names() -> None:
    for name in ("a", "sys-net", "A.b_c-1", "x" * 31):
        assert validate_name(name) == name


def test_remove_refuses_a_qube_in_use_and_names_users(app: Qubes) -> None:
    tpl = app.domains["debian-12"]
    with pytest.raises(QubesVMInUseError) as info:
        app.remove_vm(tpl)
    assert "work property template" in str(info.value)
    assert "global property default_template" in str(info.value)
    net = app.domains["net"]
    app.set("default_netvm", net)
    with pytest.raises(QubesVMInUseError, match="work property netvm"):
        app.remove_vm(net)


def test_qid_allocation_reuses_the_lowest_free(app: Qubes) -> None:
    work = app.domains["work"]
    qid = work.qid
    app.remove_vm(work)
    assert app.create_vm("AppVM", "again", "red").qid == qid


def test_features_check_with_template_netvm_adminvm(app: Qubes) -> None:
    work, tpl, net = app.domains["work"], app.domains["debian-12"], app.domains["net"]
    tpl.features["os"] = "Linux"
    assert work.features.check_with("os", template=True) == "Linux"
    with pytest.raises(QubesFeatureNotFoundError):
        work.features.check_with("os")
    work.set("netvm", net)
    net.features["net-thing"] = True
    assert work.features.check_with("net-thing", netvm=True) == "1"
    app.domains["dom0"].features["gui-x"] = False
    assert work.features.check_with("gui-x", adminvm=True) == ""
    assert work.features.check_with("os", template=True, adminvm=True) == "Linux"


def test_every_change_fires_an_event(app: Qubes) -> None:
    seen: list[tuple[str, str]] = []

    def listener(subject: Any, event: str, kwargs: dict[str, Any]) -> None:
        seen.append((str(subject), event))

    app.add_global_listener(listener)
    work = app.domains["work"]
    work.set("memory", 500)
    work.features["a"] = "b"
    work.tags.add("t")
    app.set("default_qrexec_timeout", 30)
    app.create_vm("AppVM", "new", "green")
    assert ("work", "property-set:memory") in seen
    assert ("work", "domain-feature-set:a") in seen
    assert ("work", "domain-tag-add:t") in seen
    assert ("dom0", "property-set:default_qrexec_timeout") in seen
    assert ("dom0", "domain-add") in seen


def test_custom_labels(app: Qubes) -> None:
    label = app.labels.create("pink", "0xff88cc")
    assert label.index == 9 and app.labels["pink"] is label
    with pytest.raises(QubesValueError):
        app.labels.create("pink", "0x000000")
    with pytest.raises(QubesValueError):
        app.labels.remove("red")
    app.labels.remove("pink")
    assert "pink" not in app.labels


def test_disposable_template_rules(app: Qubes) -> None:
    work = app.domains["work"]
    with pytest.raises(QubesPropertyValueError, match="not allowed to create disposables"):
        app.set("default_dispvm", work)
    work.set("template_for_dispvms", True)
    app.set("default_dispvm", work)
    disp = app.create_vm("DispVM", "disp1", "red", template=work)
    assert disp.get("include_in_backups") is False and disp.get("dispid") == 1
    assert disp.get("memory") == 400
