"""``septa-policy-agent`` as a process against a broker on a temp socket: ``--answer``,
and the terminal prompt driven through a pty and through a stdin pipe."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from septa.client.policy_agent import Question
from septa.qrexec.policy import Allow, Deny
from septa.tools.policy_agent_tty import InvalidChoice, parse_choice, render, safe
from tests.askbroker import ASK, ASK_NO_DEFAULT, RULE, TIMEOUT, BrokerThread

AGENT = [sys.executable, "-m", "septa.tools.policy_agent"]
DENIED_BY_USER = Deny(f"denied by the user ({RULE})", notify=False, rule=RULE)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerThread]:
    thread = BrokerThread(tmp_path / "policy-agent.sock")
    yield thread
    thread.close()


class Output:
    """What a process writes on ``fd``, read as it comes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.text = ""
        self.seen = 0

    def _read(self, timeout: float) -> bool:
        if not select.select([self.fd], [], [], timeout)[0]:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # a pty whose other end is closed
            data = b""
        self.text += data.decode(errors="replace").replace("\r\n", "\n")
        return bool(data)

    def expect(self, pattern: str) -> str:
        """The output since the last match, up to the next match of regex ``pattern``."""
        deadline = time.monotonic() + TIMEOUT
        while not (match := re.compile(pattern).search(self.text, self.seen)):
            left = deadline - time.monotonic()
            assert left > 0 and self._read(left), f"no {pattern!r} in {self.text[self.seen:]!r}"
        chunk = self.text[self.seen:match.end()]
        self.seen = match.end()
        return chunk


class Spawned:
    """The agent as a process: on a pty (``tty``), else with pipes."""

    def __init__(self, broker: BrokerThread, *args: str, tty: bool = False) -> None:
        command = [*AGENT, "--socket", str(broker.path), *args]
        if tty:
            master, slave = pty.openpty()
            self.proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave)
            os.close(slave)
            self.input, self.output = master, Output(master)
        else:
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT)
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.input, self.output = self.proc.stdin.fileno(), Output(self.proc.stdout.fileno())

    def type(self, line: str) -> None:
        os.write(self.input, line.encode() + b"\n")

    def expect(self, pattern: str) -> str:
        return self.output.expect(pattern)

    def wait(self) -> int:
        return self.proc.wait(TIMEOUT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def spawned() -> Iterator[list[Spawned]]:
    agents: list[Spawned] = []
    yield agents
    for agent in agents:
        agent.kill()


def spawn(spawned: list[Spawned], broker: BrokerThread, *args: str, tty: bool = False,
          ) -> Spawned:
    agent = Spawned(broker, *args, tty=tty)
    spawned.append(agent)
    agent.expect("answering every question" if "--answer" in args else "waiting for questions")
    return agent


def question(ask_targets: tuple[str, ...] = ASK.targets, default: str | None = "personal",
             argument: str = "") -> Question:
    return Question(1, "work", "qubes.Filecopy", argument, ask_targets, default, "@default",
                    60.0, time.monotonic() + 60)


@pytest.mark.parametrize(("answer", "decision", "printed"), [
    ("vault", Allow(target="vault", requested_target="@default", rule=RULE), "allowed in vault"),
    ("@default", Allow(target="personal", requested_target="@default", rule=RULE),
     "allowed in personal"),
    ("deny", DENIED_BY_USER, "refused"),
])
def test_answer_option(broker: BrokerThread, spawned: list[Spawned], answer: str,
                       decision: Allow | Deny, printed: str) -> None:
    agent = spawn(spawned, broker, "--answer", answer)
    assert broker.ask(arg="report.pdf").result(TIMEOUT) == decision
    agent.expect(f"question 1: work -> qubes.Filecopy\\+report.pdf: {printed}\n")
    assert broker.ask(ASK_NO_DEFAULT).result(TIMEOUT) == (
        DENIED_BY_USER if answer != "vault" else
        Allow(target="vault", requested_target="@default", rule=RULE))
    broker.close()
    assert agent.wait() == 0


def test_answer_option_with_a_target_not_allowed(broker: BrokerThread,
                                                 spawned: list[Spawned]) -> None:
    agent = spawn(spawned, broker, "--answer", "sys-net")
    decision = broker.ask().result(TIMEOUT)
    assert isinstance(decision, Deny) and "not one of the choices" in decision.reason
    agent.expect("allowed in sys-net")


def test_no_septad(tmp_path: Path) -> None:
    result = subprocess.run([*AGENT, "--socket", str(tmp_path / "none.sock"), "--answer", "deny"],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1
    assert "cannot connect to septad's policy agent socket" in result.stderr


def test_terminal_prompt_on_a_pty(broker: BrokerThread, spawned: list[Spawned]) -> None:
    agent = spawn(spawned, broker, "--terminal", tty=True)
    pending = broker.ask(arg="report.pdf")
    shown = agent.expect(r"s left\): ")
    assert "Question 1: allow work to call qubes.Filecopy+report.pdf?" in shown
    assert "requested target: @default" in shown
    assert "* 1) personal  (default)" in shown
    assert "  2) vault\n" in shown and "  3) @dispvm:work\n" in shown
    assert "Enter for personal" in shown
    agent.type("2")
    assert pending.result(TIMEOUT) == Allow(target="vault", requested_target="@default",
                                            rule=RULE)
    agent.expect("question 1: allowed in vault\n")

    pending = broker.ask()
    agent.expect(r"s left\): ")
    agent.type("")
    assert pending.result(TIMEOUT) == Allow(target="personal", requested_target="@default",
                                            rule=RULE)

    pending = broker.ask(ASK_NO_DEFAULT)
    shown = agent.expect(r"s left\): ")
    assert "(default)" not in shown and "n or Enter refuses" in shown
    agent.type("9")
    agent.expect(r"choose a number from 1 to 2\n.*s left\): ")
    agent.type("")
    assert pending.result(TIMEOUT) == DENIED_BY_USER

    broker.close()
    agent.expect("septad closed the connection")
    assert agent.wait() == 0


def test_terminal_prompt_one_question_at_a_time(broker: BrokerThread,
                                                spawned: list[Spawned]) -> None:
    agent = spawn(spawned, broker, "--terminal", tty=True)
    agent.type("2")  # typed before any question: must not answer the next one
    first = broker.ask(service="qubes.First")
    agent.expect(r"qubes.First\?(.|\n)*s left\): ")
    second = broker.ask(service="qubes.Second")
    agent.expect(r"question \d+ waits its turn")
    agent.type("n")
    assert first.result(TIMEOUT) == DENIED_BY_USER
    agent.expect(r"qubes.Second\?(.|\n)*s left\): ")
    agent.type("@dispvm:work")
    assert second.result(TIMEOUT) == Allow(target="@dispvm:work", requested_target="@default",
                                           rule=RULE)


def test_terminal_prompt_timeout(broker: BrokerThread, spawned: list[Spawned]) -> None:
    agent = spawn(spawned, broker, "--terminal", tty=True)
    pending = broker.ask(timeout=0.5)
    agent.expect(r"s left\): ")
    decision = pending.result(TIMEOUT)
    assert isinstance(decision, Deny)
    assert decision.reason in ("no answer within 0.5 s", DENIED_BY_USER.reason)
    agent.expect("withdrawn by septad: no answer within 0.5 s|no answer in time: refused")
    agent.type("1")  # the question is gone: nothing to answer
    pending = broker.ask()
    agent.expect(r"s left\): ")
    agent.type("1")
    assert pending.result(TIMEOUT) == Allow(target="personal", requested_target="@default",
                                            rule=RULE)


def test_terminal_prompt_on_a_stdin_pipe(broker: BrokerThread, spawned: list[Spawned]) -> None:
    agent = spawn(spawned, broker, "--terminal")
    pending = broker.ask()
    agent.expect(r"s left\): ")
    agent.type("vault")
    assert pending.result(TIMEOUT) == Allow(target="vault", requested_target="@default",
                                            rule=RULE)
    pending = broker.ask()
    agent.expect(r"s left\): ")
    assert agent.proc.stdin is not None
    agent.proc.stdin.close()
    assert pending.result(TIMEOUT) == DENIED_BY_USER
    agent.expect(r"stdin closed: refused 1 open question\(s\)")
    assert agent.wait() == 0
    broker.wait_agents(0)


def test_render_marks_the_default() -> None:
    shown = render(question(argument="a.txt"))
    assert shown.splitlines() == [
        "Question 1: allow work to call qubes.Filecopy+a.txt?",
        "  requested target: @default",
        "  allowed targets:",
        "   * 1) personal  (default)",
        "     2) vault",
        "     3) @dispvm:work",
    ]
    assert "*" not in render(question(default=None))


def test_parse_choice() -> None:
    q = question()
    assert parse_choice("", q) == "personal"
    assert parse_choice(" 3 ", q) == "@dispvm:work"
    assert parse_choice("vault", q) == "vault"
    assert parse_choice("n", q) is None and parse_choice("Deny", q) is None
    assert parse_choice("", question(default=None)) is None
    for wrong in ("0", "4", "sys-net", "-1"):
        with pytest.raises(InvalidChoice):
            parse_choice(wrong, q)


def test_safe_escapes_control_characters() -> None:
    assert safe("a\x1b[2Jb\n") == "a\\x1b[2Jb\\n"
