"""septad's side of the "ask" prompt: questions to the user's policy agent, answers back.

An ``ask`` rule lets the call run only once the user has confirmed it and picked the
target among those the policy allows. As in Qubes, where ``qrexec-policy-agent`` runs
in the user's session, a prompt agent (``septa-policy-agent``) shows the question;
here it connects to septad's socket (:attr:`septa.paths.Paths.policy_agent_socket`,
mode 0600: root only, as everything in dom0) and :class:`AskBroker` asks it.

Protocol: UTF-8 JSON objects, one per line (``\\n``-terminated, at most
:data:`MAX_LINE` bytes). septad greets a new agent once it will send it questions,
then asks and withdraws questions::

    {"type": "hello", "version": 1}
    {"type": "ask", "id": 7, "source": "work", "service": "qubes.Filecopy",
     "argument": "", "requested_target": "@default",
     "targets": ["personal", "@dispvm:work"], "default_target": "personal",
     "timeout": 60.0}
    {"type": "cancel", "id": 7, "reason": "no answer within 60 s"}

``argument`` is the service argument without its ``+`` (empty when none),
``default_target`` is null when nothing is pre-selected, ``timeout`` the seconds after
which septad stops waiting and denies. ``cancel`` withdraws a question (timed out, or the
call went away): the agent should close its prompt; so should it for all of them when
septad closes the connection. The agent answers::

    {"type": "answer", "id": 7, "target": "personal"}
    {"type": "answer", "id": 7, "target": null}

(null: the user refused). Several questions may be outstanding at once. A question
goes to the agent that connected last; only that connection can answer it. A target
that is not among ``targets``, or an answer that is not understood, denies the call;
unknown ids and lines that are not an answer object are ignored (logged); an agent
that disconnects, or sends a line longer than :data:`MAX_LINE`, leaves its questions
denied. Nothing an agent sends can stop septad.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from septa.api.server import listen_unix
from septa.qrexec.policy import Allow, Ask, Deny

log = logging.getLogger(__name__)
MAX_LINE = 65536
DEFAULT_TIMEOUT = 60.0
PROTOCOL_VERSION = 1


@dataclass
class _Question:
    ask: Ask
    answer: asyncio.Future[Allow | Deny]


@dataclass(eq=False)
class _Agent:
    """One connected prompt agent and the questions it has not answered yet."""

    number: int
    writer: asyncio.StreamWriter
    pending: dict[int, _Question] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"policy agent #{self.number}"

    def post(self, message: dict[str, Any]) -> None:
        """Queue ``message`` for sending (nothing waits for the agent to read it)."""
        if not self.writer.is_closing():
            self.writer.write(json.dumps(message).encode() + b"\n")

    def resolve(self, question_id: int, decision: Allow | Deny) -> None:
        question = self.pending.pop(question_id, None)
        if question is not None and not question.answer.done():
            question.answer.set_result(decision)

    def deny_all(self, reason: str) -> None:
        for question_id, question in list(self.pending.items()):
            self.resolve(question_id, Deny(reason, rule=question.ask.rule))


def _parse_answer(line: bytes) -> tuple[int, object] | None:
    """(id, target) of an answer line; None for anything else."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("type") != "answer":
        return None
    question_id = message.get("id")
    if not isinstance(question_id, int) or isinstance(question_id, bool):
        return None
    return question_id, message.get("target")


class AskBroker:
    """Asks the user's policy agent to confirm calls; serves the agents' socket."""

    def __init__(self) -> None:
        self._server: asyncio.AbstractServer | None = None
        self._path: Path | None = None
        self._agents: list[_Agent] = []
        self._handlers: set[asyncio.Task[Any]] = set()
        self._agent_numbers = itertools.count(1)
        self._question_ids = itertools.count(1)

    @property
    def agent_count(self) -> int:
        """How many prompt agents are connected."""
        return len(self._agents)

    async def start(self, path: Path) -> None:
        """Listen on ``path`` (replacing a stale socket), readable by root only."""
        self._server = await listen_unix(path, self._serve_agent, 0o600, limit=MAX_LINE)
        self._path = path

    async def close(self) -> None:
        """Stop listening, deny every open question and disconnect the agents."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for agent in self._agents:
            agent.deny_all("septad is stopping")
            agent.writer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
            self._path = None

    async def confirm(self, ask: Ask, source: str, service: str, arg: str,
                      timeout: float = DEFAULT_TIMEOUT) -> Allow | Deny:
        """The user's decision on a call ``ask`` applies to: Allow in the target they
        chose among ``ask.targets``, or Deny (refused, no agent, no answer in time)."""
        if not self._agents:
            return Deny("no policy agent to ask", rule=ask.rule)
        if not ask.targets:
            return Deny("no target to choose from", rule=ask.rule)
        agent = self._agents[-1]
        question_id = next(self._question_ids)
        answer: asyncio.Future[Allow | Deny] = asyncio.get_running_loop().create_future()
        agent.pending[question_id] = _Question(ask, answer)
        what = f"{source} -> {ask.requested_target}: {service}+{arg}"
        log.info("asking %s (question %d) about %s", agent, question_id, what)
        agent.post({
            "type": "ask", "id": question_id, "source": source, "service": service,
            "argument": arg, "requested_target": ask.requested_target,
            "targets": list(ask.targets), "default_target": ask.default_target,
            "timeout": timeout,
        })
        cancel_reason = "the call went away"
        try:
            async with asyncio.timeout(timeout):
                with contextlib.suppress(ConnectionError, OSError):
                    await agent.writer.drain()
                decision = await answer
        except TimeoutError:
            cancel_reason = f"no answer within {timeout:g} s"
            decision = Deny(cancel_reason, rule=ask.rule)
        finally:
            if question_id in agent.pending:
                agent.pending.pop(question_id)
                agent.post({"type": "cancel", "id": question_id, "reason": cancel_reason})
        log.info("question %d (%s): %s", question_id, what,
                 f"allowed in {decision.target}" if isinstance(decision, Allow)
                 else f"denied: {decision.reason}")
        return decision

    async def _serve_agent(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        agent = _Agent(next(self._agent_numbers), writer)
        self._agents.append(agent)
        agent.post({"type": "hello", "version": PROTOCOL_VERSION})
        log.info("%s connected", agent)
        reason = "the policy agent went away without answering"
        try:
            while line := await reader.readline():
                self._receive(agent, line)
        except ValueError:
            log.warning("%s sent a line over %d bytes; disconnecting it", agent, MAX_LINE)
            reason = "the policy agent sent an oversized message"
        except (ConnectionError, OSError):
            pass
        finally:
            self._agents.remove(agent)
            agent.deny_all(reason)
            with contextlib.suppress(ConnectionError, OSError):
                writer.close()
                await writer.wait_closed()
            log.info("%s disconnected", agent)

    def _receive(self, agent: _Agent, line: bytes) -> None:
        parsed = _parse_answer(line)
        if parsed is None:
            log.warning("%s sent something that is not an answer: %.200r", agent, line)
            return
        question_id, target = parsed
        question = agent.pending.get(question_id)
        if question is None:
            log.info("%s answered question %d, which is not open (any more)", agent, question_id)
            return
        ask = question.ask
        if target is None:
            agent.resolve(question_id, ask.answer(None))
        elif isinstance(target, str) and target in ask.targets:
            agent.resolve(question_id, ask.answer(target))
        else:
            log.warning("%s answered question %d with %.100r, not one of %s",
                        agent, question_id, target, " ".join(ask.targets))
            agent.resolve(question_id, Deny(
                f"the policy agent chose {target!r}, which is not one of the choices",
                rule=ask.rule))
