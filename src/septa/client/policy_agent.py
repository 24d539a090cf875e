"""A prompt agent's connection to septad: questions of "ask" rules in, answers out.

The line-based JSON protocol is described in :mod:`septa.api.ask_broker`. This module
has no user interface: :class:`PolicyAgentClient` turns septad's lines into
:class:`Question` and :class:`Withdrawn` messages and sends the answers; the program
(:mod:`septa.tools.policy_agent`) and the tests put a UI, or a rule, on top. Lines this
client does not understand are skipped.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import septa.paths

from .errors import QubesDaemonCommunicationError

MAX_LINE = 65536
HELLO_TIMEOUT = 10.0


@dataclass(frozen=True)
class Question:
    """Should ``source`` be allowed to call ``service``, and in which of ``targets``?"""

    id: int
    source: str
    service: str
    argument: str
    targets: tuple[str, ...]
    default_target: str | None
    requested_target: str
    timeout: float
    #: the ``time.monotonic()`` at which septad stops waiting (and denies)
    deadline: float

    @property
    def call(self) -> str:
        """``service+argument`` (the service alone when there is no argument)."""
        return f"{self.service}+{self.argument}" if self.argument else self.service

    def remaining(self) -> float:
        """Seconds left to answer."""
        return max(0.0, self.deadline - time.monotonic())


@dataclass(frozen=True)
class Withdrawn:
    """septad no longer waits for the answer to question ``id``."""

    id: int
    reason: str


Message = Question | Withdrawn


def _strings(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return tuple(value)


def _question(message: dict[str, Any], question_id: int) -> Question | None:
    source, service, argument = (message.get(key) for key in ("source", "service", "argument"))
    targets = _strings(message.get("targets"))
    default = message.get("default_target")
    requested = message.get("requested_target", "")
    timeout = message.get("timeout")
    if (not isinstance(source, str) or not isinstance(service, str)
            or not isinstance(argument, str) or not targets
            or not (default is None or isinstance(default, str))
            or not isinstance(requested, str)
            or not isinstance(timeout, int | float) or isinstance(timeout, bool)
            or not 0 < timeout < float("inf")):
        return None
    return Question(question_id, source, service, argument, targets, default or None,
                    requested, float(timeout), time.monotonic() + timeout)


def _json_object(line: bytes) -> dict[str, Any] | None:
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


def parse_message(line: bytes) -> Message | None:
    """The message of one line from septad; None when it is not one this client knows."""
    message = _json_object(line)
    if message is None:
        return None
    question_id = message.get("id")
    if not isinstance(question_id, int) or isinstance(question_id, bool):
        return None
    if message.get("type") == "ask":
        return _question(message, question_id)
    if message.get("type") == "cancel":
        reason = message.get("reason")
        return Withdrawn(question_id, reason if isinstance(reason, str) else "")
    return None


class PolicyAgentClient:
    """One connection to septad's policy agent socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    @classmethod
    def connect(cls, path: Path | None = None, timeout: float = HELLO_TIMEOUT,
                read_timeout: float | None = None) -> PolicyAgentClient:
        """Connect to ``path`` (default: this instance's ``policy_agent_socket``); returns
        once septad has greeted this agent, so that it gets the next questions.
        ``read_timeout``: how long :meth:`receive` waits before TimeoutError (None:
        as long as it takes)."""
        path = path or septa.paths.current().policy_agent_socket
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(path))
            client = cls(sock)
            hello = client._read_line()
            sock.settimeout(read_timeout)
        except (OSError, EOFError) as e:
            sock.close()
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise QubesDaemonCommunicationError(
                "cannot connect to septad's policy agent socket %s: %s",
                str(path), reason or "timed out") from None
        message = _json_object(hello)
        if message is None or message.get("type") != "hello":
            sock.close()
            raise QubesDaemonCommunicationError(
                "%s: septad did not greet this policy agent", str(path))
        return client

    def fileno(self) -> int:
        """The socket's descriptor (for ``select``)."""
        return self._sock.fileno()

    def _recv(self, size: int = MAX_LINE) -> bytes:
        try:
            data = self._sock.recv(size)
        except ConnectionResetError:
            data = b""
        if not data:
            raise EOFError("septad closed the connection")
        return data

    def _read_line(self) -> bytes:
        # Byte by byte, so that nothing after the line waits in a buffer select() ignores.
        line = b""
        while not line.endswith(b"\n") and len(line) <= MAX_LINE:
            line += self._recv(1)
        return line

    def receive(self) -> list[Message]:
        """The messages in what septad sends next (waits for it; there may be none yet
        when a line is not complete). Raises EOFError when septad closed the connection."""
        *lines, self._buffer = (self._buffer + self._recv()).split(b"\n")
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""
        messages = (parse_message(line) for line in lines)
        return [message for message in messages if message is not None]

    def messages(self) -> Iterator[Message]:
        """Every message, until septad closes the connection."""
        while True:
            try:
                batch = self.receive()
            except EOFError:
                return
            yield from batch

    def answer(self, question_id: int, target: str | None) -> None:
        """Answer question ``question_id``: run the call in ``target``, or None: refuse it.
        An answer septad can no longer receive is dropped."""
        line = json.dumps({"type": "answer", "id": question_id, "target": target})
        try:
            self._sock.sendall(line.encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self) -> None:
        """Disconnect (septad denies the questions still open)."""
        self._sock.close()

    def __enter__(self) -> PolicyAgentClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def answer_all(client: PolicyAgentClient, choose: Callable[[Question], str | None]) -> None:
    """Answer every question with ``choose(question)`` until septad closes the connection."""
    for message in client.messages():
        if isinstance(message, Question):
            client.answer(message.id, choose(message))
