"""Test helper: an :class:`AskBroker` serving a temp socket from its own event loop thread,
so that tests (and the agents they run, in threads or processes) can stay synchronous."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from septa.api.ask_broker import AskBroker
from septa.qrexec.policy import Allow, Ask, Deny

T = TypeVar("T")
TIMEOUT = 30.0
RULE = "/etc/qubes/policy.d/30-user.policy:3"
ASK = Ask(targets=("personal", "vault", "@dispvm:work"), default_target="personal",
          requested_target="@default", rule=RULE)
ASK_NO_DEFAULT = Ask(targets=("personal", "vault"), requested_target="@default", rule=RULE)


class BrokerThread:
    """A started broker on ``path``; :meth:`close` it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.broker = AskBroker()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(self.broker.start(path))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    def ask(self, ask: Ask = ASK, timeout: float = TIMEOUT, source: str = "work",
            service: str = "qubes.Filecopy", arg: str = "",
            ) -> concurrent.futures.Future[Allow | Deny]:
        """Start ``confirm``; its decision is the future's result."""
        return asyncio.run_coroutine_threadsafe(
            self.broker.confirm(ask, source, service, arg, timeout), self.loop)

    def wait_agents(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self.broker.agent_count != count:
            assert time.monotonic() < deadline, f"{self.broker.agent_count} agents, not {count}"
            time.sleep(0.01)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.run(self.broker.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()
