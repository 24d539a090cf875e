"""What a backup holds (qubes, files, the registry copy with backup-* features, the
summary) and backup profiles."""

from __future__ import annotations

import pytest
from lxml import etree

from septa import paths
from septa.backup import profile
from septa.core import store
from septa.core.app import Qubes
from septa.core.backup_content import (
    QubeContent,
    qube_content,
    registry_xml,
    select_qubes,
    size_to_human,
    summary,
)
from septa.core.errors import QubesException


@pytest.fixture
def app() -> Qubes:
    registry = store.load(paths.current())
    tpl = registry.create_vm("TemplateVM", "debian-12", "black")
    registry.set("default_template", tpl)
    registry.create_vm("AppVM", "work", "blue")
    registry.create_vm("AppVM", "vault", "black", properties={"include_in_backups": "False"})
    return registry


def test_default_selection_is_include_in_backups_without_dom0(app: Qubes) -> None:
    assert [vm.name for vm in select_qubes(app)] == ["debian-12", "work"]
    assert [vm.name for vm in select_qubes(app, None, ["work"])] == ["debian-12"]
    assert [vm.name for vm in select_qubes(app, ["vault", "work", "vault"])] == ["work", "vault"]
    assert [vm.name for vm in select_qubes(app, ["@type:AppVM"], ["@tag:x"])] == ["work", "vault"]
    app.domains["work"].tags.add("x")
    assert [vm.name for vm in select_qubes(app, ["@anyvm"], ["@tag:x"])] == ["debian-12", "vault"]
    assert select_qubes(app, []) == []
    with pytest.raises(QubesException, match="No such qube: nope"):
        select_qubes(app, ["work"], ["nope"])


def test_qube_files_are_saved_volumes_firewall_and_notes(app: Qubes) -> None:
    work, tpl = app.domains["work"], app.domains["debian-12"]
    assert [f.name for f in qube_content(work).files] == ["private.img"]
    assert [f.name for f in qube_content(tpl).files] == ["private.img", "root.img"]
    work.dir_path.mkdir(parents=True, exist_ok=True)
    (work.dir_path / "notes.txt").write_text("hello")
    content = qube_content(work)
    assert [f.name for f in content.files] == ["private.img", "notes.txt"]
    assert content.files[1].size == 5 and content.files[1].open_path().endswith("notes.txt")
    assert content.subdir == f"vm{work.qid}/"


def test_registry_copy_marks_the_backed_up_qubes(app: Qubes) -> None:
    work = app.domains["work"]
    work.features["preload-dispvm"] = "disp1"
    work.features["preload-dispvm-max"] = "2"
    content = QubeContent(work)
    root = etree.fromstring(registry_xml(app, [content]))
    features = {}
    for domain in root.iter("domain"):
        name = domain.find("properties/property[@name='name']").text
        features[name] = {f.get("name"): f.text or "" for f in domain.find("features")}
    assert features["work"]["backup-content"] == "1"
    assert features["work"]["backup-path"] == f"vm{work.qid}/"
    assert features["work"]["backup-size"] == "0"
    assert "preload-dispvm" not in features["work"] and features["work"]["preload-dispvm-max"]
    assert features["vault"] == {"backup-content": ""}
    assert work.features["preload-dispvm"] == "disp1", "the live registry is untouched"


def test_summary_has_qubes_layout(app: Qubes) -> None:
    text = summary(app, [QubeContent(app.domains["debian-12"]), QubeContent(app.domains["work"])])
    lines = text.splitlines()
    assert lines[0] == "-" * 18 + "+" + "-" * 14 + "+" + "-" * 14 + "+"
    assert lines[1] == "               VM |         type |         size |"
    assert lines[3] == "        debian-12 |  Template VM |            0 |"
    assert lines[4] == "             work |           VM |            0 |"
    assert lines[6].startswith("      Total size: |") and lines[6].endswith("0 |")
    assert lines[-3:] == ["VMs not selected for backup:", " - dom0", " - vault"]
    assert size_to_human(1536) == "1.5 KiB" and size_to_human(3 * 1024**3) == "3.0 GiB"


def test_profile_round_trip_and_errors() -> None:
    text = profile.dump(profile.Profile("p", ("work", "@tag:x"), ("vault",), "dom0", "/b",
                                        "secret", None, "gzip"))
    parsed = profile.parse("p", text)
    assert parsed.include == ("work", "@tag:x") and parsed.passphrase_text == "secret"
    assert profile.parse("p", "include:\ndestination_vm: dom0\ndestination_path: /b\n"
                         "compression: false\n").compression is None
    assert profile.parse("p", "include: [$type:AppVM]\ndestination_vm: dom0\n"
                         "destination_path: /b\n").include == ("@type:AppVM",)
    for bad, message in (("[1, 2]", "not a mapping"), ("include: [a]\n", "destination_vm"),
                         ("destination_vm: dom0\n", "include"),
                         ("include: a\ndestination_vm: d\ndestination_path: p\n", "list"),
                         ("include: [\n", "not YAML"),
                         ("include:\ndestination_vm: d\ndestination_path: p\n"
                          "compression: 'gzip; rm'\n", "compression")):
        with pytest.raises(profile.BackupProfileError, match=message):
            profile.parse("p", bad)
    with pytest.raises(profile.BackupProfileError, match="Invalid backup profile name"):
        profile.profile_path(paths.current().backup_profiles_dir, "../x")


def test_key_derivation_cost_knob(monkeypatch: pytest.MonkeyPatch) -> None:
    from septa.core.backup_job import scrypt_params

    assert scrypt_params().log_n == 20
    monkeypatch.setenv("SEPTA_BACKUP_SCRYPT_LOG_N", "15")
    assert scrypt_params().log_n == 15
    for bad in ("9", "21", "x"):
        monkeypatch.setenv("SEPTA_BACKUP_SCRYPT_LOG_N", bad)
        with pytest.raises(QubesException, match="must be 14..20"):
            scrypt_params()
