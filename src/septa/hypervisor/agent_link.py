"""The host side of a qube's agent channel: connect, wait for READY, ping, shutdown.

The channel is the unix socket behind the qube's virtio-serial port; frames are those of
:mod:`septa.agent.wire`. Frames on channels other than the control channel are handed
to a callback, which is where the multiplexed RPC (qrexec) plugs in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from septa.agent.wire import CONTROL_CHANNEL, Frame, FrameDecoder, FrameError, FrameType
from septa.core.errors import QubesVMError

log = logging.getLogger(__name__)
FrameCallback = Callable[[Frame], None]


class AgentLink:
    """One connection to one qube's agent."""

    def __init__(self, vm_name: str, socket_path: Path) -> None:
        self.vm_name = vm_name
        self.socket_path = socket_path
        self.hello: dict[str, Any] | None = None
        self.on_call_frame: FrameCallback | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()
        self._pongs: dict[bytes, asyncio.Future[None]] = {}
        self._task: asyncio.Task[None] | None = None

    async def connect(self, timeout: float) -> None:
        """Connect to the socket, waiting for QEMU to create it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(
                    str(self.socket_path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise QubesVMError(
                        f"{self.vm_name}: agent channel {self.socket_path} did not appear"
                    ) from None
                await asyncio.sleep(0.05)
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_loop(self) -> None:
        decoder = FrameDecoder()
        assert self._reader is not None
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for frame in decoder.feed(data):
                    self._dispatch(frame)
        except (FrameError, ConnectionError, OSError) as exc:
            log.warning("%s: agent channel broken: %s", self.vm_name, exc)
        finally:
            self._closed.set()
            for future in self._pongs.values():
                if not future.done():
                    future.set_exception(QubesVMError(f"{self.vm_name}: agent went away"))

    def _dispatch(self, frame: Frame) -> None:
        if frame.channel != CONTROL_CHANNEL:
            if self.on_call_frame is not None:
                self.on_call_frame(frame)
            return
        if frame.type == FrameType.HELLO:
            with contextlib.suppress(FrameError):
                self.hello = frame.json()
        elif frame.type == FrameType.READY:
            self._ready.set()
        elif frame.type == FrameType.PING:
            self.send(Frame(FrameType.PONG, CONTROL_CHANNEL, frame.payload))
        elif frame.type == FrameType.PONG:
            future = self._pongs.pop(frame.payload, None)
            if future is not None and not future.done():
                future.set_result(None)
        elif frame.type == FrameType.ERROR:
            log.warning("%s: agent reports an error: %r", self.vm_name, frame.payload[:200])

    def send(self, frame: Frame) -> None:
        if self._writer is None or self._writer.is_closing():
            raise QubesVMError(f"{self.vm_name}: agent channel is not connected")
        self._writer.write(frame.encode())

    async def wait_ready(self, timeout: float) -> None:
        """Until the agent says READY; :class:`TimeoutError` after ``timeout`` seconds."""
        ready = asyncio.ensure_future(self._ready.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait({ready, closed}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
            closed.cancel()
        if not self._ready.is_set():
            if self._closed.is_set():
                raise QubesVMError(f"{self.vm_name}: the qube stopped before its agent was ready")
            raise TimeoutError

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self._closed.is_set()

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (the agent or the qube went away, or close())."""
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Until the connection ends (the call multiplexer fails its calls then)."""
        await self._closed.wait()

    async def ping(self, timeout: float = 10.0) -> float:
        """Round trip time of a PING, in seconds."""
        token = os.urandom(8)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs[token] = future
        start = time.monotonic()
        self.send(Frame(FrameType.PING, CONTROL_CHANNEL, token))
        await asyncio.wait_for(future, timeout)
        return time.monotonic() - start

    def request_hello(self) -> None:
        """Ask the agent to introduce itself again (after the host reconnected)."""
        self._ready.clear()
        self.send(Frame(FrameType.HELLO))

    def request_shutdown(self) -> None:
        self.send(Frame(FrameType.SHUTDOWN_REQUEST))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
