"""Calls multiplexed over a qube's agent link: the host side of the call transport.

A :class:`CallMux` owns the call channels (>= 1) of one :class:`AgentLink`. Each
:class:`RemoteCall` is one process in the qube with its stdin, stdout, stderr and exit
status; the frame rules (OPEN, DATA / DATA_ERR, EOF / EOF_ERR, WINDOW / WINDOW_ERR, EXIT,
CLOSE, ERROR) are documented in :mod:`septa.agent.wire` and the requests in
:mod:`septa.agent.request`.

Flow control keeps memory bounded both ways: :meth:`RemoteCall.write` waits until the
agent has granted room for the bytes; the bytes of stdout and of stderr are buffered here
up to the window this side granted (``window`` of the mux, at least the protocol's
initial window), and granted again only as the consumer reads them. A consumer that
stops reading one of the two streams eventually stops the process, as a pipe would: read
both (as :func:`run` and :func:`pump` do).

If the link goes away every open call fails with :class:`LinkClosed`; a request the agent
refuses fails with :class:`CallRefused`; an aborted call with :class:`CallAborted`.

Calls the qube starts itself (CALL frames, on channels with
:data:`~septa.agent.wire.AGENT_CHANNEL_BIT`) become :class:`~septa.qrexec.incoming.IncomingCall`
objects handed to :attr:`CallMux.on_incoming`; without a handler they are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from septa.agent import wire
from septa.agent.wire import Frame, FrameType
from septa.hypervisor.agent_link import AgentLink

if TYPE_CHECKING:
    from septa.qrexec.incoming import IncomingCall

log = logging.getLogger(__name__)

#: Exit status reported for a call whose process a signal killed: 128 + signal number.
SIGNAL_BASE = 128


class QrexecError(Exception):
    """A call failed."""


class CallRefused(QrexecError):
    """The agent refused the call (its ERROR message), or broke off a running one."""


class CallAborted(QrexecError):
    """The call was aborted on this side (:meth:`RemoteCall.abort`)."""


class LinkClosed(QrexecError):
    """The agent link went away."""


class ByteSource(Protocol):
    """Where :func:`pump` reads a call's stdin from (an :class:`asyncio.StreamReader`)."""

    async def read(self, n: int = -1) -> bytes: ...


class ByteSink(Protocol):
    """Where :func:`pump` writes a call's output to (an :class:`asyncio.StreamWriter`).
    When it also has ``can_write_eof()`` / ``write_eof()``, the end of the output is
    passed on."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...


class StreamOwner(Protocol):
    """The call an :class:`IncomingStream` belongs to (a :class:`RemoteCall`, or an
    :class:`~septa.qrexec.incoming.IncomingCall` for the stdin a qube sends)."""

    channel: int

    @property
    def done(self) -> bool: ...

    def _check(self) -> None: ...

    def _send(self, frame: Frame) -> None: ...


class IncomingStream:
    """A call's stdout or stderr on this side: bytes received and not read yet.

    The agent sends at most ``window`` more bytes; :meth:`read` grants them again, in
    batches of a quarter of the window, once the consumer has taken them.
    """

    def __init__(self, call: StreamOwner, window_type: int, window: int) -> None:
        self._call = call
        self._window_type = window_type
        self._threshold = max(1, window // 4)
        self._consumed = 0
        self._changed = asyncio.Event()
        self.buffer = bytearray()
        #: bytes the agent may still send
        self.window = window
        self.eof = False
        #: the most bytes ever buffered (never more than the window)
        self.high_water = 0

    def _feed(self, data: bytes) -> bool:
        """Bytes from the agent; False if it sent more than it was granted."""
        if len(data) > self.window:
            return False
        self.window -= len(data)
        self.buffer += data
        self.high_water = max(self.high_water, len(self.buffer))
        self._changed.set()
        return True

    def _end(self) -> None:
        self.eof = True
        self._changed.set()

    def _wake(self) -> None:
        self._changed.set()

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all of them until EOF when ``n`` < 0); ``b""`` at EOF.
        Waits for at least one byte; raises the call's error if it failed."""
        if n < 0:
            chunks = []
            while chunk := await self.read(wire.MAX_PAYLOAD):
                chunks.append(chunk)
            return b"".join(chunks)
        while True:
            self._call._check()
            if self.buffer or self.eof or n == 0:
                break
            self._changed.clear()
            await self._changed.wait()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        self._consumed += len(data)
        if self._consumed >= self._threshold and not self.eof and not self._call.done:
            self._call._send(wire.window(self._call.channel, self._consumed, self._window_type))
            self.window += self._consumed
            self._consumed = 0
        return data


class StdinSink:
    """A call's stdin as a :class:`ByteSink` (``write`` + ``drain``, ``write_eof``), so
    that :func:`pump` can feed one call's output into another call."""

    def __init__(self, call: RemoteCall) -> None:
        self._call = call
        self._pending = bytearray()
        self._eof_task: asyncio.Task[None] | None = None

    def write(self, data: bytes) -> None:
        """Queue ``data``; :meth:`drain` sends it."""
        self._pending += data

    async def drain(self) -> None:
        """Send what was written, as the agent's window allows."""
        data = bytes(self._pending)
        self._pending.clear()
        if data:
            await self._call.write(data)

    def can_write_eof(self) -> bool:
        """Always: the end of stdin is EOF."""
        return True

    def write_eof(self) -> None:
        """End stdin after what was written (sent by a task; see :meth:`wait_closed`)."""
        async def eof() -> None:
            await self.drain()
            await self._call.close_stdin()

        if self._eof_task is None:
            self._eof_task = asyncio.get_running_loop().create_task(eof())

    async def wait_closed(self) -> None:
        """Until the EOF of :meth:`write_eof` has been sent."""
        if self._eof_task is not None:
            await self._eof_task


class RemoteCall:
    """One call: a process in the qube. Made by :meth:`CallMux.open`."""

    def __init__(self, mux: CallMux, channel: int, window: int) -> None:
        self.channel = channel
        self._mux = mux
        self.stdout = IncomingStream(self, FrameType.WINDOW, window)
        self.stderr = IncomingStream(self, FrameType.WINDOW_ERR, window)
        #: the exit status, once the call has ended
        self.returncode: int | None = None
        self.error: QrexecError | None = None
        self._send_window = wire.INITIAL_WINDOW
        self._window_changed = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._stdin_closed = False
        self._ended = asyncio.Event()

    @property
    def done(self) -> bool:
        """Whether the call has ended (exited or failed)."""
        return self._ended.is_set()

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def _send(self, frame: Frame) -> None:
        self._mux._send(frame)

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the process's stdin, waiting for the agent's window.

        :class:`BrokenPipeError` when the call has ended (the rest of stdin is not
        wanted), :class:`ValueError` after :meth:`close_stdin`.
        """
        view = memoryview(data)
        async with self._write_lock:
            while view:
                self._check()
                if self.done:
                    raise BrokenPipeError(f"call {self.channel} has ended")
                if self._stdin_closed:
                    raise ValueError("stdin of the call is closed")
                if self._send_window <= 0:
                    self._window_changed.clear()
                    await self._window_changed.wait()
                    continue
                size = min(len(view), self._send_window, wire.MAX_PAYLOAD)
                self._send(Frame(FrameType.DATA, self.channel, bytes(view[:size])))
                self._send_window -= size
                view = view[size:]

    async def close_stdin(self) -> None:
        """End the process's stdin (after what was written). Nothing to do when the call
        has ended already."""
        async with self._write_lock:
            self._check()
            if self._stdin_closed or self.done:
                self._stdin_closed = True
                return
            self._stdin_closed = True
            self._send(Frame(FrameType.EOF, self.channel))

    async def read_stdout(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of stdout (all until EOF when ``n`` < 0); ``b""`` at EOF."""
        return await self.stdout.read(n)

    async def read_stderr(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of stderr (all until EOF when ``n`` < 0); ``b""`` at EOF."""
        return await self.stderr.read(n)

    async def wait(self) -> int:
        """The exit status (128 + N when signal N killed the process)."""
        await self._ended.wait()
        self._check()
        assert self.returncode is not None
        return self.returncode

    def stdin_sink(self) -> StdinSink:
        """The call's stdin as a :class:`ByteSink`."""
        return StdinSink(self)

    def abort(self) -> None:
        """Kill the process and fail the call with :class:`CallAborted`."""
        if self.done:
            return
        self._fail(CallAborted(f"call {self.channel} aborted"))
        self._mux._abort(self)

    # --- from the mux ----------------------------------------------------------------------

    def _fail(self, error: QrexecError) -> None:
        if self.done:
            return
        self.error = error
        self._end()

    def _end(self) -> None:
        self._ended.set()
        self._window_changed.set()
        self.stdout._wake()
        self.stderr._wake()

    def _on_frame(self, frame: Frame) -> None:
        kind = frame.type
        if kind in (FrameType.DATA, FrameType.DATA_ERR):
            stream = self.stdout if kind == FrameType.DATA else self.stderr
            if not stream._feed(frame.payload):
                self.abort()
                self.error = CallRefused(f"call {self.channel}: the agent sent more "
                                         f"{frame.name} than the window allowed")
        elif kind == FrameType.EOF:
            self.stdout._end()
        elif kind == FrameType.EOF_ERR:
            self.stderr._end()
        elif kind == FrameType.WINDOW:
            self._send_window += wire.window_grant(frame)
            self._window_changed.set()
        elif kind == FrameType.EXIT:
            status = frame.json().get("status")
            if not isinstance(status, int):
                raise wire.FrameError(f"EXIT without a status: {frame.payload!r}")
            self.returncode = status
            self.stdout._end()
            self.stderr._end()
            self._end()
        elif kind == FrameType.ERROR:
            message = frame.json().get("message", "")
            self._fail(CallRefused(f"call {self.channel}: {message}"))
        else:
            log.warning("call %d: unexpected frame %s", self.channel, frame.name)


class CallMux:
    """The calls of one agent link. Make it in the event loop, after the link connected,
    one per connection; it takes over the link's ``on_call_frame``.

    ``window`` is how much of each of a call's stdout and stderr this side buffers at
    most (at least :data:`septa.agent.wire.INITIAL_WINDOW`, the part granted at OPEN).
    """

    def __init__(self, link: AgentLink, window: int = wire.INITIAL_WINDOW) -> None:
        if not wire.INITIAL_WINDOW <= window <= 0xFFFFFFFF:
            raise ValueError(f"the window must be {wire.INITIAL_WINDOW} bytes or more "
                             "(and fit in 32 bits)")
        self.link = link
        self.window = window
        self.calls: dict[int, RemoteCall] = {}
        #: calls the qube started (CALL), by channel
        self.incoming: dict[int, IncomingCall] = {}
        #: what takes a new incoming call (it must end it: EXIT or ERROR); None refuses
        self.on_incoming: Callable[[IncomingCall], None] | None = None
        self._aborted: set[int] = set()  # channels that wait for their EXIT after CLOSE
        self._next_channel = 1
        self._error: LinkClosed | None = None
        link.on_call_frame = self._on_frame
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    @property
    def closed(self) -> bool:
        """Whether the link went away (or :meth:`close` was called)."""
        return self._error is not None

    async def _watch(self) -> None:
        await self.link.wait_closed()
        self._link_down(f"{self.link.vm_name}: the agent link closed")

    def _link_down(self, reason: str) -> None:
        if self._error is None:
            self._error = LinkClosed(reason)
        for call in list(self.calls.values()):
            call._fail(LinkClosed(reason))
        self.calls.clear()
        for incoming in list(self.incoming.values()):
            incoming._fail(LinkClosed(reason))
        self.incoming.clear()
        self._aborted.clear()

    async def close(self) -> None:
        """Abort the open calls and let go of the link (which stays connected).

        The agent frees the channels of aborted calls only when their processes have been
        reaped: make one mux per link connection, not a new one on the same link."""
        for call in list(self.calls.values()):
            call.abort()
        self._link_down("the call multiplexer was closed")
        if self.link.on_call_frame == self._on_frame:
            self.link.on_call_frame = None
        self._watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watcher

    def _send(self, frame: Frame) -> None:
        if self._error is not None:
            raise LinkClosed(str(self._error))
        try:
            self.link.send(frame)
        except Exception as exc:  # the link reports a lost connection in its own terms
            self._link_down(f"{self.link.vm_name}: {exc}")
            raise LinkClosed(str(exc)) from exc

    def _allocate(self) -> int:
        while True:
            channel = self._next_channel
            self._next_channel = channel + 1 if channel < wire.AGENT_CHANNEL_BIT - 1 else 1
            if channel not in self.calls and channel not in self._aborted:
                return channel

    async def open(self, request: dict[str, Any]) -> RemoteCall:
        """Start a call: ``request`` is the OPEN request of :mod:`septa.agent.request`.

        Returns at once; a request the agent refuses fails the call later (its
        operations raise :class:`CallRefused`).
        """
        if self._error is not None:
            raise LinkClosed(str(self._error))
        payload = json.dumps(request, separators=(",", ":")).encode("utf-8")
        channel = self._allocate()
        call = RemoteCall(self, channel, self.window)
        frame = Frame(FrameType.OPEN, channel, payload)
        frame.encode()  # too large a request raises FrameError here, before any state
        self.calls[channel] = call
        try:
            self._send(frame)
            extra = self.window - wire.INITIAL_WINDOW
            if extra:
                self._send(wire.window(channel, extra, FrameType.WINDOW))
                self._send(wire.window(channel, extra, FrameType.WINDOW_ERR))
        except BaseException:
            self.calls.pop(channel, None)
            raise
        return call

    def _abort(self, call: RemoteCall) -> None:
        if self.calls.pop(call.channel, None) is None:
            return
        self._aborted.add(call.channel)
        with contextlib.suppress(LinkClosed):
            self._send(Frame(FrameType.CLOSE, call.channel))

    def _on_frame(self, frame: Frame) -> None:
        """A frame of a call from the link (never raises: it runs in the link's reader)."""
        if frame.channel & wire.AGENT_CHANNEL_BIT:
            from septa.qrexec.incoming import dispatch

            dispatch(self, frame)
            return
        call = self.calls.get(frame.channel)
        if call is None:
            if frame.type in (FrameType.EXIT, FrameType.ERROR):
                self._aborted.discard(frame.channel)
            return
        try:
            call._on_frame(frame)
        except Exception as exc:  # a bad frame must not stop the link's reader
            log.warning("call %d: bad frame %s from the agent: %s", call.channel, frame.name, exc)
            call.abort()
            call.error = CallRefused(f"call {call.channel}: bad {frame.name} from the agent")
        if call.done:
            self.calls.pop(call.channel, None)

    async def run(
        self, request: dict[str, Any], stdin: bytes | AsyncIterable[bytes] | None = None,
    ) -> tuple[int, bytes, bytes]:
        """Run a small call to its end: (exit status, stdout, stderr). ``stdin`` is sent,
        then closed; a process that exits before reading all of it is not an error."""
        call = await self.open(request)

        async def feed() -> None:
            try:
                if isinstance(stdin, bytes | bytearray | memoryview):
                    await call.write(stdin)
                elif stdin is not None:
                    async for chunk in stdin:
                        await call.write(chunk)
                await call.close_stdin()
            except BrokenPipeError:
                pass

        try:
            _, out, err = await gather_or_cancel(
                feed(), call.read_stdout(), call.read_stderr())
            status = await call.wait()
        except BaseException:
            call.abort()
            raise
        return status, out, err


async def gather_or_cancel(*coros: Coroutine[Any, Any, Any]) -> list[Any]:
    """Run ``coros`` concurrently; the first to fail cancels the others and its exception
    is raised (unlike :func:`asyncio.gather`, which leaves them running)."""
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _write_eof(sink: ByteSink) -> None:
    can_write_eof = getattr(sink, "can_write_eof", None)
    if can_write_eof is not None and can_write_eof():
        sink.write_eof()  # type: ignore[attr-defined]


async def pump(
    call: RemoteCall,
    stdin: ByteSource | None,
    stdout: ByteSink | None,
    stderr: ByteSink | None = None,
    *,
    write_eof: bool = True,
) -> int:
    """Connect ``call`` to streams until it ends; return its exit status.

    ``stdin`` is read and sent until its EOF (then the call's stdin is closed; ``None``
    closes it at once); stdout and stderr are written to ``stdout`` and ``stderr``
    (discarded where ``None``), draining after each chunk so that a slow sink slows the
    process down instead of filling memory; at their EOF the sinks get ``write_eof()``
    when they can (``write_eof=False`` leaves them open). Once the call has ended, a
    ``stdin`` that has not reached its EOF is no longer read. On an error, or when
    cancelled, the call is aborted.
    """

    async def feed() -> None:
        if stdin is not None:
            while data := await stdin.read(wire.MAX_PAYLOAD):
                try:
                    await call.write(data)
                except BrokenPipeError:
                    return
        with contextlib.suppress(BrokenPipeError):
            await call.close_stdin()

    async def forward(stream: IncomingStream, sink: ByteSink | None) -> None:
        while data := await stream.read(wire.MAX_PAYLOAD):
            if sink is not None:
                sink.write(data)
                await sink.drain()
        if sink is not None and write_eof:
            _write_eof(sink)

    feeder = asyncio.ensure_future(feed())
    outputs = asyncio.ensure_future(gather_or_cancel(
        forward(call.stdout, stdout), forward(call.stderr, stderr), call.wait()))
    try:
        while not outputs.done():
            waiting = {outputs} if feeder.done() else {feeder, outputs}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            error = feeder.exception() if feeder.done() else None
            if error is not None:
                raise error
        status: int = outputs.result()[2]
        return status
    except BaseException:
        call.abort()
        raise
    finally:
        for task in (feeder, outputs):
            if not task.done():
                task.cancel()
        await asyncio.gather(feeder, outputs, return_exceptions=True)
