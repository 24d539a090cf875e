"""qrexec-policy-exec --just-evaluate: output lines and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import septa.paths
from septa.client.testing import FakeAdminServer
from septa.tools import qrexec_policy_exec
from septa.tools.qrexec_policy_exec import EXIT_ALLOW, EXIT_ASK, EXIT_DENY, EXIT_USAGE, main

SYSTEM_INFO = {
    "domains": {
        "dom0": {"tags": [], "type": "AdminVM", "template_for_dispvms": False,
                 "default_dispvm": None, "icon": None, "guivm": None, "power_state": "Running",
                 "uuid": "00000000-0000-0000-0000-000000000000"},
        "work": {"tags": ["work"], "type": "AppVM", "template_for_dispvms": False,
                 "default_dispvm": "dvm", "icon": None, "guivm": None, "power_state": "Halted",
                 "uuid": "11111111-2222-3333-4444-555555555555"},
        "vault": {"tags": [], "type": "AppVM", "template_for_dispvms": False,
                  "default_dispvm": None, "icon": None, "guivm": None, "power_state": "Halted",
                  "uuid": "22222222-2222-3333-4444-555555555555"},
        "dvm": {"tags": [], "type": "AppVM", "template_for_dispvms": True,
                "default_dispvm": None, "icon": None, "guivm": None, "power_state": "Halted",
                "uuid": "33333333-2222-3333-4444-555555555555"},
    }
}

POLICY = """\
test.Allow * work vault allow user=root
test.Allow * @anyvm @dispvm allow autostart=no
test.Allow * @anyvm @adminvm allow
test.Ask * @anyvm @default ask default_target=vault
test.Ask * @anyvm vault allow
test.Ask * @anyvm @dispvm allow
test.Ask * @anyvm dom0 ask
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    policy_dir = tmp_path / "policy"
    policy_dir.mkdir()
    (policy_dir / "50-test.policy").write_text(POLICY)
    info = tmp_path / "info.json"
    info.write_text(json.dumps(SYSTEM_INFO))
    return policy_dir, info


def run(
    capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, dict[str, str], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    lines = out.splitlines()
    pairs = dict(line.split("=", 1) for line in lines)
    assert len(pairs) == len(lines)
    if lines:
        assert lines[0].startswith("result=")
    return code, pairs, err


def evaluate(
    capsys: pytest.CaptureFixture[str], files: tuple[Path, Path], *args: str
) -> tuple[int, dict[str, str], str]:
    policy_dir, info = files
    return run(capsys, "--just-evaluate", "--path", str(policy_dir), "--system-info", str(info),
               *args)


def test_allow(capsys: pytest.CaptureFixture[str], files: tuple[Path, Path]) -> None:
    code, out, err = evaluate(capsys, files, "work", "vault", "test.Allow+arg")
    assert code == EXIT_ALLOW and err == ""
    assert out == {
        "result": "allow", "target": "vault", "user": "root", "autostart": "True",
        "notify": "False", "requested_target": "vault",
        "rule": f"{files[0]}/50-test.policy:1",
    }


def test_allow_dispvm_and_dom0(
    capsys: pytest.CaptureFixture[str], files: tuple[Path, Path]
) -> None:
    code, out, _ = evaluate(capsys, files, "work", "@dispvm", "test.Allow")
    # autostart=no cannot start a new disposable
    assert code == EXIT_DENY and out["result"] == "deny" and "autostart" in out["reason"]
    code, out, _ = evaluate(capsys, files, "work", "@adminvm", "test.Allow")
    assert code == EXIT_ALLOW and out["target"] == "dom0" and out["user"] == ""
    code, out, _ = evaluate(capsys, files, "work", "dom0", "test.Allow")
    assert code == EXIT_ALLOW and out["target"] == "dom0"


def test_ask(capsys: pytest.CaptureFixture[str], files: tuple[Path, Path]) -> None:
    code, out, _ = evaluate(capsys, files, "work", "@default", "test.Ask")
    assert code == EXIT_ASK
    assert out["result"] == "ask" and out["target"] == "@default"
    assert out["targets"] == "@dispvm:dvm dom0 vault"
    assert out["default_target"] == "vault"
    code, out, _ = evaluate(capsys, files, "work", "", "test.Ask")
    assert code == EXIT_ASK and out["target"] == "@default"


def test_ask_default_target_empty_when_not_allowed(
    capsys: pytest.CaptureFixture[str], files: tuple[Path, Path]
) -> None:
    code, out, _ = evaluate(capsys, files, "vault", "", "test.Ask")
    assert code == EXIT_ASK and out["default_target"] == "" and out["targets"] == "dom0"


def test_assume_yes_for_ask(capsys: pytest.CaptureFixture[str], files: tuple[Path, Path]) -> None:
    code, out, _ = evaluate(capsys, files, "--assume-yes-for-ask", "work", "dom0", "test.Ask")
    assert code == EXIT_ALLOW and out["target"] == "dom0"
    code, out, _ = evaluate(capsys, files, "--assume-yes-for-ask", "work", "", "test.Ask")
    assert code == EXIT_DENY and "not a valid choice" in out["reason"]


@pytest.mark.parametrize(
    ("source", "target", "call", "reason"),
    [
        ("work", "vault", "test.Other", "no matching rule"),
        ("work", "ghost", "test.Allow", "does not exist"),
        ("ghost", "vault", "test.Allow", "does not exist"),
        ("vault", "vault", "test.Ask", "itself"),
        ("work", "@dispvm:vault", "test.Allow", "not a template for disposables"),
    ],
)
def test_deny(
    capsys: pytest.CaptureFixture[str], files: tuple[Path, Path],
    source: str, target: str, call: str, reason: str,
) -> None:
    code, out, err = evaluate(capsys, files, source, target, call)
    assert code == EXIT_DENY and err == ""
    assert out["result"] == "deny" and reason in out["reason"]


@pytest.mark.parametrize(
    "argv",
    [
        ["work", "vault", "test.Allow"],  # no --just-evaluate
        ["--just-evaluate", "work", "vault"],
        ["--just-evaluate", "work", "vault", "test.Allow", "extra"],
        ["--just-evaluate", "--bogus", "work", "vault", "test.Allow"],
        ["--just-evaluate", "work", "vault", "test.Allow+bad arg"],
        ["--just-evaluate", "work", "vault", "test/Allow"],
        ["--just-evaluate", "work", "vault", "x" * 65],
        ["--just-evaluate", "work", "vault", "+arg"],
        ["--just-evaluate", "--path", "/nonexistent/dir", "work", "vault", "test.Allow"],
        ["--just-evaluate", "--system-info", "/nonexistent.json", "work", "vault", "test.Allow"],
    ],
)
def test_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == EXIT_USAGE and out == {}
    assert err.startswith("qrexec-policy-exec: error: ") and err.count("\n") == 1


def test_bad_system_info_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, out, err = run(capsys, "--just-evaluate", "--system-info", str(bad), "a", "b", "c.D")
    assert code == EXIT_USAGE and "not valid JSON" in err


def test_broken_policy_denies_with_file_and_line(
    capsys: pytest.CaptureFixture[str], files: tuple[Path, Path]
) -> None:
    bad = files[0] / "60-bad.policy"
    bad.write_text("\ntest.Allow * work vault allow bogus=1\n")
    code, out, err = evaluate(capsys, files, "work", "vault", "test.Allow")
    assert code == EXIT_DENY and out["result"] == "deny"
    assert f"{bad}:2:" in out["reason"] and f"{bad}:2:" in err
    assert err.count("\n") == 1


def test_path_replaces_the_default_dirs(
    capsys: pytest.CaptureFixture[str], files: tuple[Path, Path], septa_root: Path
) -> None:
    default = septa.paths.current().policy_dir
    default.mkdir(parents=True)
    (default / "10-first.policy").write_text("test.Allow * @anyvm @anyvm deny\n")
    code, _, _ = evaluate(capsys, files, "work", "vault", "test.Allow")
    assert code == EXIT_ALLOW
    code, out, _ = run(capsys, "--just-evaluate", "--system-info", str(files[1]),
                       "work", "vault", "test.Allow")
    assert code == EXIT_DENY and out["rule"] == f"{default}/10-first.policy:1"


def test_system_info_from_septad(
    capsys: pytest.CaptureFixture[str], files: tuple[Path, Path]
) -> None:
    with FakeAdminServer(septa.paths.current().internal_socket) as server:
        server.expect("dom0", "internal.GetSystemInfo", ok=json.dumps(SYSTEM_INFO))
        code, out, _ = run(capsys, "--just-evaluate", "--path", str(files[0]),
                           "work", "vault", "test.Allow")
    assert code == EXIT_ALLOW and out["target"] == "vault"
    assert [c.method for c in server.calls] == ["internal.GetSystemInfo"]


def test_septad_unreachable(capsys: pytest.CaptureFixture[str], files: tuple[Path, Path]) -> None:
    code, out, err = run(capsys, "--just-evaluate", "--path", str(files[0]),
                         "work", "vault", "test.Allow")
    assert code == EXIT_DENY
    assert out["result"] == "deny" and "cannot get system info" in out["reason"]
    assert err.startswith("qrexec-policy-exec: error: cannot get system info: septad is not")
    assert err.count("\n") == 1


def test_septad_error_answer(capsys: pytest.CaptureFixture[str], files: tuple[Path, Path]) -> None:
    with FakeAdminServer(septa.paths.current().internal_socket) as server:
        server.expect("dom0", "internal.GetSystemInfo", ok="not json")
        code, _, err = run(capsys, "--just-evaluate", "--path", str(files[0]),
                           "work", "vault", "test.Allow")
    assert code == EXIT_DENY and "cannot get system info" in err


def test_as_a_program(files: tuple[Path, Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", qrexec_policy_exec.__name__, "--just-evaluate",
         "--path", str(files[0]), "--system-info", str(files[1]), "work", "vault", "test.Allow"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("result=allow\ntarget=vault\n")
