"""A new disposable takes its template's settings: netvm, other explicit properties,
features (not the preload list), tags and firewall rules."""

from __future__ import annotations

from septa import paths
from septa.core import store
from septa.core.disposables import inherit
from septa.core.firewall import FIREWALL_FILE, load_rules, parse_rule, save_rules


def test_a_disposable_inherits_what_its_template_set() -> None:
    app = store.load(paths.current())
    app.set("default_template", app.create_vm("TemplateVM", "debian-12", "black"))
    app.create_vm("AppVM", "sys-net", "red", properties={"provides_network": "True"})
    app.set("default_netvm", app.domains["sys-net"])
    dvm = app.create_vm("AppVM", "offline-dvm", "red",
                        properties={"template_for_dispvms": "True", "netvm": "",
                                    "memory": "700"})
    dvm.features["preload-dispvm-max"] = "1"
    dvm.features["service.cups"] = "1"
    dvm.tags.add("work-stuff")
    dvm.dir_path.mkdir(parents=True, exist_ok=True)
    save_rules(dvm.dir_path / FIREWALL_FILE, [parse_rule("action=drop")])
    disp = app.create_vm("DispVM", "disp42", "red", template=dvm,
                         properties={"dispid": "42", "memory": "300"})
    assert disp.get("netvm") is app.domains["sys-net"], "before: the global default"

    inherit(disp, dvm)

    assert disp.get("netvm") is None and not disp.property_is_default("netvm")
    assert disp.get("memory") == 300, "a value the disposable was given stays"
    assert disp.get("dispid") == 42 and disp.get("template") is dvm
    assert dict(disp.features.items()) == {"service.cups": "1"}
    assert "work-stuff" in disp.tags
    assert [str(rule) for rule in load_rules(disp.dir_path / FIREWALL_FILE)] == ["action=drop"]
