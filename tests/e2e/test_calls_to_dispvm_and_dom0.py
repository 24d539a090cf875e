"""Calls from qubes to new disposables and to dom0's Admin API, on real qubes; preloaded
disposables."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import Qubes

pytestmark = pytest.mark.e2e


@pytest.fixture
def policy(qubes: Qubes) -> Iterator[Callable[[str], None]]:
    path = qubes.daemon.paths.policy_dir / "30-septa-test.policy"
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(text: str) -> None:
        tmp = path.with_name(".30-septa-test.tmp")
        tmp.write_text(text)
        tmp.replace(path)

    yield write
    path.unlink(missing_ok=True)


def names(qubes: Qubes) -> set[str]:
    return set(qubes.run("qvm-ls", "--raw-list").stdout.split())


def wait_for(what: str, check: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)


def test_qube_calls_admin_api_only_where_the_policy_allows(
        qubes: Qubes, policy: Callable[[str], None]) -> None:
    mgmt, managed, other = (qubes.create("adm-mgmt"), qubes.create("adm-managed"),
                            qubes.create("adm-other"))
    qubes.run("qvm-tags", managed, "add", "managed")
    list_call = "qrexec-client-vm dom0 admin.vm.List </dev/null | tr '\\0' '\\n'; echo status=$?"
    get_call = ("qrexec-client-vm {} admin.vm.property.Get+label </dev/null >/tmp/answer; "
                "s=$?; tr '\\0' ' ' </tmp/answer; echo; echo status=$s")
    try:
        policy(f"admin.vm.List * {mgmt} @adminvm allow\n"
               f"admin.vm.List * {mgmt} @tag:managed allow target=dom0\n"
               f"admin.vm.property.Get * {mgmt} @tag:managed allow target=dom0\n")
        listed = qubes.run("qvm-run", "-p", mgmt, list_call).stdout.splitlines()
        assert listed[0] == "0"
        seen = {line.split()[0] for line in listed[1:] if line and not line.startswith("status")}
        assert seen == {"dom0", managed}, "only the qubes the policy lets it list"
        got = qubes.run("qvm-run", "-p", mgmt, get_call.format(managed)).stdout
        assert "0 default=False type=label red" in got and "status=0" in got
        refused = qubes.run("qvm-run", "-p", mgmt, get_call.format(other))
        assert "status=126" in refused.stdout and "Request refused" in refused.stderr

        policy("")
        refused = qubes.run("qvm-run", "-p", mgmt, list_call)
        assert "Request refused" in refused.stderr
        assert not refused.stdout.startswith("0"), "no rule, no answer"
    finally:
        for name in (mgmt, managed, other):
            qubes.remove(name)


def test_call_to_dispvm_runs_once_and_leaves_nothing(
        qubes: Qubes, policy: Callable[[str], None]) -> None:
    dvm, caller = qubes.create("call-dvm"), qubes.create("call-from")
    qubes.run("qvm-prefs", dvm, "template_for_dispvms", "True")
    qubes.run("qvm-prefs", caller, "default_dispvm", dvm)
    try:
        policy(f"qubes.VMShell * {caller} @dispvm allow\n")
        before = names(qubes)
        done = qubes.run("qvm-run", "-p", caller,
                         "echo 'hostname; echo $QREXEC_REMOTE_DOMAIN; exit 4' | "
                         "qrexec-client-vm @dispvm qubes.VMShell; echo status=$?")
        disp, remote, status = done.stdout.split()
        assert disp.startswith("disp") and disp not in before
        assert (remote, status) == (caller, "status=4")
        wait_for(f"{disp} to be removed", lambda: disp not in names(qubes), 120)
        assert not (qubes.daemon.paths.root / "appvms" / disp).exists()
        assert names(qubes) == before

        policy("")
        refused = qubes.run("qvm-run", "-p", caller,
                            "echo hostname | qrexec-client-vm @dispvm qubes.VMShell; "
                            "echo status=$?")
        assert "status=126" in refused.stdout
        assert names(qubes) == before, "a refused call makes no disposable"
    finally:
        qubes.remove(caller)
        qubes.remove(dvm)


def test_preloaded_disposable_is_used_then_replaced(qubes: Qubes) -> None:
    dvm = qubes.create("pre-dvm")
    qubes.run("qvm-prefs", dvm, "template_for_dispvms", "True")

    def preloaded() -> list[str]:
        result = qubes.run("qvm-features", dvm, "preload-dispvm", check=False)
        return result.stdout.split() if result.returncode == 0 else []

    try:
        qubes.run("qvm-features", dvm, "preload-dispvm-max", "1")
        wait_for("a preloaded disposable", lambda: len(preloaded()) == 1)
        first = preloaded()[0]
        assert qubes.state(first) == "Paused"
        assert qubes.run("qvm-features", first, "internal").stdout.strip() == "1"

        done = qubes.run("qvm-run", "-p", "--dispvm", dvm, "hostname")
        assert done.stdout.strip() == first, "the preloaded qube ran the command"
        wait_for(f"{first} removed", lambda: first not in names(qubes), 120)
        wait_for("a new preloaded disposable", lambda: len(preloaded()) == 1)
        second = preloaded()[0]
        assert second != first

        qubes.run("qvm-kill", second)
        wait_for(f"{second} replaced", lambda: preloaded() not in ([], [second]))
        third = preloaded()[0]
        assert second not in names(qubes) and third != second

        qubes.run("qvm-features", dvm, "preload-dispvm-max", "0")
        wait_for("the extra preloaded disposable removed",
                 lambda: not preloaded() and third not in names(qubes), 120)
    finally:
        qubes.run("qvm-features", "--unset", dvm, "preload-dispvm-max", check=False)
        for name in preloaded():
            qubes.remove(name)
        qubes.remove(dvm)
