"""The ``ask`` action on real qubes: the policy agent is asked, with the targets the
policy allows and the default pre-selected; the call runs where the user chose, and a
refusal never reaches any target."""

from __future__ import annotations

import threading

import pytest

from septa.client.policy_agent import PolicyAgentClient, Question
from tests.e2e.conftest import Qubes

pytestmark = pytest.mark.e2e


class Agent(threading.Thread):
    """A policy agent that gives each question's answer from ``answers`` in turn."""

    def __init__(self, qubes: Qubes, answers: list[str | None]) -> None:
        super().__init__(daemon=True)
        self.client = PolicyAgentClient.connect(qubes.daemon.paths.policy_agent_socket,
                                                read_timeout=300)
        self.answers = answers
        self.questions: list[Question] = []

    def run(self) -> None:
        for message in self.client.messages():
            if isinstance(message, Question):
                self.questions.append(message)
                self.client.answer(message.id, self.answers.pop(0))
                if not self.answers:
                    return


def test_ask_runs_the_call_in_the_chosen_target(qubes: Qubes) -> None:
    caller, first, second = (qubes.create("ask-caller"), qubes.create("ask-one"),
                             qubes.create("ask-two"))
    policy = qubes.daemon.paths.policy_dir / "30-septa-ask.policy"
    policy.parent.mkdir(parents=True, exist_ok=True)
    call = "echo hostname | qrexec-client-vm @default qubes.VMShell; echo status=$?"
    try:
        for name in (first, second):
            qubes.run("qvm-start", name)
        policy.write_text(f"qubes.VMShell * {caller} @default ask default_target={first}\n"
                          f"qubes.VMShell * {caller} {first} ask\n"
                          f"qubes.VMShell * {caller} {second} ask\n")
        agent = Agent(qubes, [second, None])
        agent.start()
        chosen = qubes.run("qvm-run", "-p", caller, call)
        assert chosen.stdout.split() == [second, "status=0"]
        refused = qubes.run("qvm-run", "-p", caller, call)
        assert refused.stdout.split() == ["status=126"]
        agent.join(60)
        asked = agent.questions[0]
        assert (asked.source, asked.service, asked.requested_target) == \
            (caller, "qubes.VMShell", "@default")
        assert set(asked.targets) == {first, second} and asked.default_target == first
        agent.client.close()

        no_agent = qubes.run("qvm-run", "-p", caller, call)
        assert no_agent.stdout.split() == ["status=126"], "nobody to ask: deny"
    finally:
        policy.unlink(missing_ok=True)
        for name in (caller, first, second):
            qubes.remove(name)
