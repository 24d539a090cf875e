"""septad serves the policy agent socket (root only), greets agents, and lets them go
when it stops."""

from __future__ import annotations

import stat
import subprocess
import sys

from septa.client.policy_agent import PolicyAgentClient
from tests.wire import Daemon


def test_septad_serves_policy_agents(septad: Daemon) -> None:
    path = septad.paths.policy_agent_socket
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with PolicyAgentClient.connect(path):
        pass
    agent = subprocess.Popen(
        [sys.executable, "-m", "septa.tools.policy_agent", "--answer", "deny"],
        env=septad.env, stdout=subprocess.PIPE, text=True)
    assert agent.stdout is not None
    assert "answering every question with deny" in agent.stdout.readline()
    septad.stop()
    assert agent.wait(30) == 0
    assert not path.exists()
