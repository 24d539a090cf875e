"""The optional services' units and the updates proxy files that go into every template."""

from __future__ import annotations

import configparser
import os
import subprocess
from pathlib import Path

import pytest

from septa.agent.services import service_files
from septa.templates import guest_services, guestfiles
from septa.templates.recipe import load_recipe

RECIPE = Path(__file__).resolve().parents[2] / "templates" / "recipes" / "debian-12.toml"
UNITS = "usr/lib/systemd/system"


def unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("image")
    guestfiles.install(root, load_recipe(RECIPE))
    return root


def test_every_optional_unit_is_conditioned_on_its_flag_and_wanted_by_the_target(
        image: Path) -> None:
    flags = {"septa-updates-proxy.service": "qubes-updates-proxy",
             "septa-updates-proxy-forwarder.socket": "updates-proxy-setup"}
    assert set(guest_services.OPTIONAL_UNITS) == set(flags)
    for name, flag in flags.items():
        parsed = unit((image / UNITS / name).read_text())
        assert parsed["Unit"]["ConditionPathExists"] == f"/run/qubes-service/{flag}"
        assert parsed["Install"]["WantedBy"] == "septa-services.target"
    target = unit((image / UNITS / "septa-services.target").read_text())
    assert "Install" not in target  # started by septa.Configure, never at boot


def test_the_build_enables_the_optional_units() -> None:
    enable = [c for c in guestfiles.chroot_commands(load_recipe(RECIPE))
              if c[:2] == ["systemctl", "enable"]]
    assert len(enable) == 1
    assert set(guest_services.OPTIONAL_UNITS) <= set(enable[0][2:])


def test_updates_proxy_runs_tinyproxy_in_the_foreground_on_the_loopback(image: Path) -> None:
    service = unit((image / UNITS / "septa-updates-proxy.service").read_text())["Service"]
    assert service["User"] == "tinyproxy"
    command = service["ExecStart"].split()
    assert command[:2] == ["/usr/bin/tinyproxy", "-d"]
    conf_path = command[command.index("-c") + 1]
    conf = dict(line.split(None, 1) for line in
                (image / conf_path.lstrip("/")).read_text().splitlines()
                if line and not line.startswith("#"))
    assert conf["Port"] == "8082" and conf["Listen"] == "127.0.0.1"
    assert conf["Allow"] == "127.0.0.1" and conf["ConnectPort"] == "443"
    assert "LogFile" not in conf and "PidFile" not in conf and int(conf["Timeout"]) > 0


def test_forwarder_hands_each_connection_to_a_qrexec_call(image: Path) -> None:
    socket = unit((image / UNITS / "septa-updates-proxy-forwarder.socket").read_text())
    assert socket["Socket"]["ListenStream"] == "127.0.0.1:8082"
    assert socket["Socket"]["Accept"] == "yes"
    service = unit((image / UNITS / "septa-updates-proxy-forwarder@.service").read_text())
    assert service["Service"]["StandardInput"] == "socket"
    assert service["Service"]["StandardOutput"] == "socket"
    program, *args = service["Service"]["ExecStart"].split()
    assert args == ["@default", "qubes.UpdatesProxy"]
    assert os.access(image / program.lstrip("/"), os.X_OK)


def test_qubes_updates_proxy_service_connects_to_the_proxy(image: Path) -> None:
    text = service_files()["qubes.UpdatesProxy"]
    assert text.startswith("#!/bin/sh\n")
    assert text.splitlines()[-1] == "exec socat STDIO TCP:127.0.0.1:8082"
    assert os.access(image / "etc/qubes-rpc/qubes.UpdatesProxy", os.X_OK)


@pytest.mark.parametrize(("flag", "answer"), [(True, "http://127.0.0.1:8082/"),
                                              (False, "DIRECT")])
def test_apt_uses_the_proxy_only_while_the_flag_is_set(image: Path, tmp_path: Path,
                                                       flag: bool, answer: str) -> None:
    conf = (image / guest_services.APT_CONF_PATH.lstrip("/")).read_text()
    for method in ("http", "https"):
        assert (f'Acquire::{method}::Proxy-Auto-Detect '
                f'"{guest_services.APT_PROXY_DETECT_PATH}";') in conf
    script = (image / guest_services.APT_PROXY_DETECT_PATH.lstrip("/")).read_text()
    flags = tmp_path / "flags"
    flags.mkdir()
    if flag:
        (flags / "updates-proxy-setup").touch()
    script = script.replace("/run/qubes-service", str(flags))
    result = subprocess.run(["sh", "-c", script, "detect", "http://deb.debian.org/debian"],
                            capture_output=True, text=True, check=True)
    assert result.stdout == answer + "\n"
