"""septad's "ask" broker with programmatic policy agents on a temp socket: the answer
allows the chosen target only when the policy offered it; no agent, no answer in time,
an agent that goes away or talks nonsense: deny, and the broker keeps serving."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from septa.client.errors import QubesDaemonCommunicationError
from septa.client.policy_agent import (
    Message,
    PolicyAgentClient,
    Question,
    Withdrawn,
    answer_all,
    parse_message,
)
from septa.qrexec.policy import Allow, Deny
from tests.askbroker import ASK, ASK_NO_DEFAULT, RULE, TIMEOUT, BrokerThread


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    thread = BrokerThread(tmp_path / "run" / "policy-agent.sock")
    yield thread
    thread.close()


class Answering:
    """A policy agent in a thread answering every question with ``choose``."""

    def __init__(self, broker: BrokerThread, choose: Callable[[Question], str | None]) -> None:
        self.questions: list[Question] = []
        self.client = PolicyAgentClient.connect(broker.path)

        def record(question: Question) -> str | None:
            self.questions.append(question)
            return choose(question)

        self.thread = threading.Thread(target=answer_all, args=(self.client, record),
                                       daemon=True)
        self.thread.start()


class Agent:
    """A policy agent the test drives, message by message."""

    def __init__(self, broker: BrokerThread) -> None:
        self.client = PolicyAgentClient.connect(broker.path, read_timeout=TIMEOUT)
        self.inbox: collections.deque[Message] = collections.deque()

    def next(self) -> Message:
        while not self.inbox:
            self.inbox.extend(self.client.receive())
        return self.inbox.popleft()

    def question(self) -> Question:
        message = self.next()
        assert isinstance(message, Question)
        return message

    def answer(self, question_id: int, target: str | None) -> None:
        self.client.answer(question_id, target)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def target_of(pending: concurrent.futures.Future[Allow | Deny]) -> str:
    decision = pending.result(TIMEOUT)
    assert isinstance(decision, Allow), decision
    return decision.target


def raw_agent(broker: BrokerThread) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.connect(str(broker.path))
    assert json.loads(sock.recv(4096)) == {"type": "hello", "version": 1}
    return sock


def test_socket_is_for_root_only(broker: BrokerThread) -> None:
    assert stat.S_IMODE(broker.path.stat().st_mode) == 0o600


def test_chosen_target_other_than_the_default(broker: BrokerThread) -> None:
    agent = Answering(broker, lambda question: "vault")
    decision = broker.ask(arg="report.pdf", timeout=20).result(TIMEOUT)
    assert decision == Allow(target="vault", requested_target="@default", rule=RULE)
    [question] = agent.questions
    assert (question.source, question.service, question.argument) == (
        "work", "qubes.Filecopy", "report.pdf")
    assert question.call == "qubes.Filecopy+report.pdf"
    assert question.targets == ("personal", "vault", "@dispvm:work")
    assert question.default_target == "personal"
    assert question.requested_target == "@default"
    assert question.timeout == 20
    assert 0 < question.remaining() <= 20


def test_default_target(broker: BrokerThread) -> None:
    Answering(broker, lambda question: question.default_target)
    assert broker.ask().result(TIMEOUT) == Allow(
        target="personal", requested_target="@default", rule=RULE)


def test_target_not_among_the_choices_is_denied(broker: BrokerThread) -> None:
    Answering(broker, lambda question: "sys-net")
    decision = broker.ask().result(TIMEOUT)
    assert isinstance(decision, Deny)
    assert "sys-net" in decision.reason and "not one of the choices" in decision.reason
    assert decision.rule == RULE


def test_user_refuses(broker: BrokerThread) -> None:
    Answering(broker, lambda question: None)
    decision = broker.ask().result(TIMEOUT)
    assert decision == Deny(f"denied by the user ({RULE})", notify=False, rule=RULE)


def test_no_agent_denies(broker: BrokerThread) -> None:
    assert broker.ask().result(TIMEOUT) == Deny("no policy agent to ask", rule=RULE)


def test_no_answer_in_time_denies_and_withdraws_the_question(broker: BrokerThread) -> None:
    with Agent(broker) as agent:
        decision = broker.ask(timeout=0.2).result(TIMEOUT)
        assert decision == Deny("no answer within 0.2 s", rule=RULE)
        question = agent.question()
        assert agent.next() == Withdrawn(question.id, "no answer within 0.2 s")
        agent.answer(question.id, "vault")  # too late: ignored
        Answering(broker, lambda question: "vault")
        assert isinstance(broker.ask().result(TIMEOUT), Allow)


def test_agent_disconnecting_mid_question_denies(broker: BrokerThread) -> None:
    agent = Agent(broker)
    pending = broker.ask()
    agent.question()
    agent.close()
    decision = pending.result(TIMEOUT)
    assert isinstance(decision, Deny) and "went away" in decision.reason
    broker.wait_agents(0)
    assert broker.ask().result(TIMEOUT) == Deny("no policy agent to ask", rule=RULE)


def test_garbage_from_the_agent_is_ignored(broker: BrokerThread) -> None:
    sock = raw_agent(broker)
    pending = broker.ask()
    question = json.loads(sock.recv(4096))
    assert question["type"] == "ask"
    qid = question["id"]
    sock.sendall(b"not json\n\xff\xfe\n[1, 2]\n" + b"[" * 5000 + b"\n"
                 + b'{"type": "answer"}\n{"type": "answer", "id": true, "target": "vault"}\n'
                 + b'{"type": "answer", "id": 999, "target": "vault"}\n'
                 + b'{"type": "hello", "id": %d}\n\n' % qid)
    sock.sendall(b'{"type": "answer", "id": %d, "target": "vault"}\n' % qid)
    assert target_of(pending) == "vault"
    sock.close()


def test_answer_that_is_not_a_target_name_denies(broker: BrokerThread) -> None:
    sock = raw_agent(broker)
    pending = broker.ask()
    qid = json.loads(sock.recv(4096))["id"]
    sock.sendall(b'{"type": "answer", "id": %d, "target": ["vault"]}\n' % qid)
    decision = pending.result(TIMEOUT)
    assert isinstance(decision, Deny) and "not one of the choices" in decision.reason
    sock.close()


def test_oversized_line_disconnects_the_agent_and_the_broker_keeps_serving(
        broker: BrokerThread) -> None:
    sock = raw_agent(broker)
    pending = broker.ask()
    sock.recv(4096)
    with pytest.raises(OSError):
        for _ in range(200):  # septad drops the connection part way through
            sock.sendall(b"x" * 65536)
    decision = pending.result(TIMEOUT)
    assert isinstance(decision, Deny) and "oversized" in decision.reason
    sock.close()
    broker.wait_agents(0)
    Answering(broker, lambda question: "vault")
    assert isinstance(broker.ask().result(TIMEOUT), Allow)


def test_several_questions_at_once(broker: BrokerThread) -> None:
    with Agent(broker) as agent:
        first = broker.ask(ASK)
        second = broker.ask(ASK_NO_DEFAULT, service="qubes.OpenInVM")
        by_service = {q.service: q for q in (agent.question(), agent.question())}
        assert by_service["qubes.Filecopy"].id != by_service["qubes.OpenInVM"].id
        assert by_service["qubes.OpenInVM"].default_target is None
        agent.answer(by_service["qubes.OpenInVM"].id, "personal")
        agent.answer(by_service["qubes.Filecopy"].id, "@dispvm:work")
        assert target_of(first) == "@dispvm:work"
        assert target_of(second) == "personal"


def test_the_newest_agent_is_asked_and_only_it_answers(broker: BrokerThread) -> None:
    with Agent(broker) as older:
        newer = Agent(broker)
        pending = broker.ask()
        question = newer.question()
        older.answer(question.id, "vault")  # not its question: ignored
        newer.answer(question.id, "personal")
        assert target_of(pending) == "personal"
        newer.close()
        broker.wait_agents(1)
        pending = broker.ask()
        question = older.question()
        older.answer(question.id, "vault")
        assert target_of(pending) == "vault"


def test_closing_the_broker_denies_open_questions(broker: BrokerThread) -> None:
    with Agent(broker) as agent:
        pending = broker.ask()
        agent.question()
        broker.close()
        assert pending.result(TIMEOUT) == Deny("septad is stopping", rule=RULE)
        with pytest.raises(EOFError):
            agent.next()
    assert not broker.path.exists()


def test_a_call_that_goes_away_withdraws_its_question(broker: BrokerThread) -> None:
    with Agent(broker) as agent:
        pending = broker.ask()
        question = agent.question()
        pending.cancel()
        assert agent.next() == Withdrawn(question.id, "the call went away")


def test_connecting_without_septad_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(QubesDaemonCommunicationError, match="cannot connect"):
        PolicyAgentClient.connect(tmp_path / "nothing.sock")


@pytest.mark.parametrize("line", [
    b"", b"nonsense", b"[]", b'{"type": "ask"}',
    b'{"type": "ask", "id": 1, "source": "work", "service": "s", "argument": "",'
    b' "targets": [], "default_target": null, "timeout": 5}',
    b'{"type": "ask", "id": 1, "source": "work", "service": "s", "argument": "",'
    b' "targets": ["a"], "default_target": null, "timeout": NaN}',
    b'{"type": "ask", "id": 1, "source": 3, "service": "s", "argument": "",'
    b' "targets": ["a"], "default_target": null, "timeout": 5}',
    b'{"type": "surprise", "id": 1}',
])
def test_the_client_skips_what_it_does_not_understand(line: bytes) -> None:
    assert parse_message(line) is None
