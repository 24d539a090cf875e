"""System info: the JSON septad serves, read into the facts the policy resolves against."""

from __future__ import annotations

import json

import pytest

from septa.qrexec.policy import DomainInfo, SystemInfo

SAMPLE = {
    "domains": {
        "dom0": {"tags": ["admin"], "type": "AdminVM", "template_for_dispvms": False,
                 "default_dispvm": "dvm", "icon": "adminvm-black", "guivm": None,
                 "power_state": "Running", "uuid": "00000000-0000-0000-0000-000000000000"},
        "work": {"tags": ["a", "b"], "type": "AppVM", "template_for_dispvms": False,
                 "default_dispvm": "dvm", "icon": "appvm-blue", "guivm": None,
                 "power_state": "Halted", "uuid": "11111111-2222-3333-4444-555555555555"},
        "dvm": {"tags": [], "type": "AppVM", "template_for_dispvms": True,
                "default_dispvm": None, "icon": "appvm-red", "guivm": None,
                "power_state": "Halted", "uuid": "22222222-2222-3333-4444-555555555555"},
    }
}


def test_from_json() -> None:
    info = SystemInfo.from_json(json.dumps(SAMPLE).encode())
    assert set(info.domains) == {"dom0", "work", "dvm"}
    work = info.domains["work"]
    assert work == DomainInfo(
        "work", type="AppVM", tags=frozenset({"a", "b"}), template_for_dispvms=False,
        default_dispvm="dvm", power_state="Halted", uuid="11111111-2222-3333-4444-555555555555",
        icon="appvm-blue", guivm=None,
    )
    assert info.domains["dvm"].template_for_dispvms is True
    assert info.adminvm == "dom0" and info.domains["dom0"].is_adminvm
    assert SystemInfo.from_json(SAMPLE).domains == info.domains
    assert SystemInfo.from_json(json.dumps(SAMPLE)).domains == info.domains


def test_resolve_names_and_uuids() -> None:
    info = SystemInfo.from_json(SAMPLE)
    assert info.resolve("work") == "work"
    assert info.resolve("uuid:11111111-2222-3333-4444-555555555555") == "work"
    assert info.resolve("uuid:" + "11111111-2222-3333-4444-555555555555".upper()) == "work"
    assert info.resolve("uuid:00000000-0000-0000-0000-000000000000") == "dom0"
    assert info.resolve("ghost") is None
    assert info.resolve("uuid:ffffffff-2222-3333-4444-555555555555") is None
    assert "work" in info and "ghost" not in info
    assert info.is_adminvm("dom0") and info.is_adminvm("@adminvm")
    assert not info.is_adminvm("work")


def test_missing_fields_take_defaults() -> None:
    info = SystemInfo.from_json({"domains": {"x": {}}})
    assert info.domains["x"] == DomainInfo("x")


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"\xff",
        b"[]",
        b'{"domains": []}',
        b'{"nodomains": {}}',
        b'{"domains": {"x": []}}',
        b'{"domains": {"x": {"tags": "a"}}}',
        b'{"domains": {"x": {"type": 3}}}',
        b'{"domains": {"x": {"default_dispvm": 3}}}',
        b'{"domains": {"uuid:11111111-2222-3333-4444-555555555555": {}}}',
    ],
)
def test_malformed(data: bytes) -> None:
    with pytest.raises(ValueError):
        SystemInfo.from_json(data)
