"""A qube calls a service in another qube through dom0, under the policy: allowed calls
relay data and the exit code; a denied call never reaches the target."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Qubes

pytestmark = pytest.mark.e2e

SERVICE = """#!/bin/sh
echo "called by $QREXEC_REMOTE_DOMAIN" >> /tmp/septa-calls.log
tr a-z A-Z
exit 3
"""


def test_policy_governs_calls_between_qubes(qubes: Qubes) -> None:
    caller, target = qubes.create("q2q-caller"), qubes.create("q2q-target")
    policy = qubes.daemon.paths.policy_dir / "30-septa-test.policy"
    policy.parent.mkdir(parents=True, exist_ok=True)
    try:
        qubes.run("qvm-start", target)
        qubes.run("qvm-run", "-p", "-u", "root", target,
                  f"cat > /etc/qubes-rpc/test.Upper <<'EOF'\n{SERVICE}EOF\n"
                  "chmod 755 /etc/qubes-rpc/test.Upper")
        policy.write_text(f"test.Upper * {caller} {target} allow\n"
                          "test.Upper * @anyvm @anyvm deny\n")
        done = qubes.run("qvm-run", "-p", caller,
                         f"echo hello | qrexec-client-vm {target} test.Upper; echo status=$?")
        assert done.stdout == "HELLO\nstatus=3\n"
        log = qubes.run("qvm-run", "-p", target, "cat /tmp/septa-calls.log").stdout
        assert log == f"called by {caller}\n"

        policy.write_text(f"test.Upper * {caller} {target} deny\n")
        refused = qubes.run("qvm-run", "-p", caller,
                            f"echo x | qrexec-client-vm {target} test.Upper; echo status=$?")
        assert "status=126" in refused.stdout
        assert "Request refused" in refused.stderr
        log = qubes.run("qvm-run", "-p", target, "cat /tmp/septa-calls.log").stdout
        assert log == f"called by {caller}\n", "the denied call must not reach the target"

        policy.unlink()
        unmatched = qubes.run("qvm-run", "-p", caller,
                              f"qrexec-client-vm {target} test.Upper </dev/null; echo $?")
        assert unmatched.stdout.strip().endswith("126"), "no rule means deny"
    finally:
        policy.unlink(missing_ok=True)
        qubes.remove(caller)
        qubes.remove(target)
