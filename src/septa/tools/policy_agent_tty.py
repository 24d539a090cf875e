"""The terminal prompt of ``septa-policy-agent``: septad's questions, one at a time.

Each question shows the calling qube, the service and argument, and the numbered
targets the policy allows, the default one marked ``*``. The answer is a line: a number
or a target's name, Enter for the default (a refusal when there is none), ``n`` to
refuse. A question not answered in time is refused; questions that arrive meanwhile
wait their turn, and so does anything typed before a question was shown (discarded, so
that a stray Enter cannot allow a call).
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import termios
from typing import TextIO

from septa.client.policy_agent import Message, PolicyAgentClient, Question, Withdrawn

REFUSE_WORDS = ("n", "no", "deny")


def safe(text: str) -> str:
    """``text`` with control characters escaped, so that it cannot drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def render(question: Question) -> str:
    """The question as shown, without the final prompt line."""
    lines = [f"Question {question.id}: allow {safe(question.source)} to call "
             f"{safe(question.call)}?"]
    if question.requested_target:
        lines.append(f"  requested target: {safe(question.requested_target)}")
    lines.append("  allowed targets:")
    for number, target in enumerate(question.targets, 1):
        mark = "*" if target == question.default_target else " "
        suffix = "  (default)" if mark == "*" else ""
        lines.append(f"   {mark} {number}) {safe(target)}{suffix}")
    return "\n".join(lines) + "\n"


def prompt_line(question: Question) -> str:
    """The line asking for the answer, with the seconds left."""
    keys = (f"Enter for {safe(question.default_target)}, n refuses" if question.default_target
            else "n or Enter refuses")
    return f"Target number or name ({keys}; {question.remaining():.0f} s left): "


class InvalidChoice(ValueError):
    """An answer line that names no allowed target."""


def parse_choice(text: str, question: Question) -> str | None:
    """The target an answer line chooses, or None for a refusal."""
    text = text.strip()
    if not text:
        return question.default_target
    if text.isdigit():
        number = int(text)
        if 1 <= number <= len(question.targets):
            return question.targets[number - 1]
        raise InvalidChoice(f"choose a number from 1 to {len(question.targets)}")
    if text.lower() in REFUSE_WORDS:
        return None
    if text in question.targets:
        return text
    raise InvalidChoice(f"{safe(text)} is not one of the allowed targets")


class TerminalPrompt:
    """Answers the questions of ``client`` with lines read from ``stdin``."""

    def __init__(self, client: PolicyAgentClient, stdin: int, out: TextIO) -> None:
        self.client = client
        self.stdin = stdin
        self.out = out
        self.waiting: collections.deque[Question] = collections.deque()
        self.current: Question | None = None
        self.typed = b""

    def say(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def run(self) -> int:
        """Serve until septad disconnects (0) or stdin ends (0, refusing what is open)."""
        self.say("septa-policy-agent: waiting for questions (Ctrl-C to stop)\n")
        while True:
            self._next_question()
            timeout = self.current.remaining() if self.current else None
            readable, _, _ = select.select([self.client.fileno(), self.stdin], [], [], timeout)
            if self.client.fileno() in readable:
                try:
                    for message in self.client.receive():
                        self._handle(message)
                except EOFError:
                    self.say("\nseptad closed the connection\n")
                    return 0
            if self.stdin in readable and not self._read_input():
                self._refuse_all("stdin closed")
                return 0
            if self.current is not None and self.current.remaining() <= 0:
                self._answer(None, "no answer in time: refused")

    def _next_question(self) -> None:
        while self.current is None and self.waiting:
            question = self.waiting.popleft()
            if question.remaining() <= 0:
                continue
            self.current = question
            self.typed = b""
            with contextlib.suppress(termios.error, OSError):
                termios.tcflush(self.stdin, termios.TCIFLUSH)
            self.say("\n" + render(question) + prompt_line(question))

    def _handle(self, message: Message) -> None:
        if isinstance(message, Question):
            self.waiting.append(message)
            if self.current is not None:
                self.say(f"\n(question {message.id} waits its turn)\n"
                         + prompt_line(self.current))
        elif isinstance(message, Withdrawn):
            if self.current is not None and self.current.id == message.id:
                self.current = None
                self.say(f"\nquestion {message.id} withdrawn by septad: "
                         f"{safe(message.reason)}\n")
            self.waiting = collections.deque(q for q in self.waiting if q.id != message.id)

    def _read_input(self) -> bool:
        data = os.read(self.stdin, 4096)
        if not data:
            return False
        *lines, self.typed = (self.typed + data).split(b"\n")
        for line in lines:
            if self.current is None:
                continue
            try:
                target = parse_choice(line.decode(errors="replace"), self.current)
            except InvalidChoice as e:
                self.say(f"{e}\n" + prompt_line(self.current))
                continue
            self._answer(target, f"allowed in {safe(target)}" if target else "refused")
        return True

    def _answer(self, target: str | None, what: str) -> None:
        assert self.current is not None
        self.client.answer(self.current.id, target)
        self.say(f"question {self.current.id}: {what}\n")
        self.current = None

    def _refuse_all(self, why: str) -> None:
        open_questions = ([self.current] if self.current else []) + list(self.waiting)
        for question in open_questions:
            self.client.answer(question.id, None)
        self.current = None
        self.waiting.clear()
        self.say(f"\n{why}: refused {len(open_questions)} open question(s)\n")
