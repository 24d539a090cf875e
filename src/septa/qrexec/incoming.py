"""Calls a qube starts (CALL frames): their host side, as streams a relay connects.

The agent sends CALL on a channel with :data:`~septa.agent.wire.AGENT_CHANNEL_BIT`
(frame rules in :mod:`septa.agent.wire`); :func:`dispatch` (called by
:class:`~septa.qrexec.mux.CallMux` for every frame of such a channel) makes an
:class:`IncomingCall` and hands it to the mux's ``on_incoming`` handler, which must end
it with :meth:`IncomingCall.exit` or :meth:`IncomingCall.refuse`.

Seen from here the qube is the client: :attr:`IncomingCall.stdin` is what the caller
sends (an :class:`~septa.qrexec.mux.IncomingStream`, granted again as it is read), and
:attr:`IncomingCall.stdout` / :attr:`IncomingCall.stderr` are sinks towards the caller
that never send more than the caller granted. The request names a service, an argument
and a target; the source is never in it: it is the qube at the other end of the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from septa.agent import wire
from septa.agent.wire import Frame, FrameType
from septa.qrexec.mux import CallAborted, IncomingStream, QrexecError

if TYPE_CHECKING:
    from septa.qrexec.mux import CallMux

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What a qube asked for: ``service+arg`` in ``target`` (``@default`` when empty)."""

    target: str
    service: str
    arg: str = ""


def parse_call(payload: bytes) -> CallInfo:
    """The request of a CALL frame; ValueError if it is malformed. The names are checked
    later, with the policy's rules."""
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"the request is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("the request is not a JSON object")
    target, service, arg = data.get("target", ""), data.get("service"), data.get("arg", "")
    if not isinstance(target, str) or not isinstance(service, str) or not isinstance(arg, str):
        raise ValueError("target, service and arg must be strings")
    return CallInfo(target or "@default", service, arg)


class OutputSink:
    """The remote's stdout or stderr towards the calling qube (a ``ByteSink``): DATA or
    DATA_ERR within the window the qube granted, EOF or EOF_ERR at the end."""

    def __init__(self, call: IncomingCall, data_type: int, eof_type: int) -> None:
        self._call = call
        self._data_type = data_type
        self._eof_type = eof_type
        self._pending = bytearray()
        self._changed = asyncio.Event()
        self._eof = False
        #: bytes the qube accepts now
        self.window = wire.INITIAL_WINDOW
        #: bytes sent so far
        self.sent = 0

    def write(self, data: bytes) -> None:
        """Queue ``data``; :meth:`drain` sends it."""
        if self._eof:
            raise ValueError("write after write_eof")
        self._pending += data

    async def drain(self) -> None:
        """Send what was written, as the qube's window allows; BrokenPipeError once the
        call has ended."""
        while self._pending:
            self._call._check()
            if self._call.done:
                raise BrokenPipeError(f"call {self._call.channel} has ended")
            if self.window <= 0:
                self._changed.clear()
                await self._changed.wait()
                continue
            size = min(len(self._pending), self.window, wire.MAX_PAYLOAD)
            self._call._send(Frame(self._data_type, self._call.channel,
                                   bytes(self._pending[:size])))
            del self._pending[:size]
            self.window -= size
            self.sent += size

    def can_write_eof(self) -> bool:
        """Always."""
        return True

    def write_eof(self) -> None:
        """End the stream (after a :meth:`drain` of what was written)."""
        if self._eof:
            return
        if self._pending:
            raise ValueError("write_eof before the written bytes were drained")
        self._eof = True
        if not self._call.done:
            self._call._send(Frame(self._eof_type, self._call.channel))

    def _grant(self, grant: int) -> None:
        self.window += grant
        self._changed.set()

    def _wake(self) -> None:
        self._changed.set()


class IncomingCall:
    """One call a qube started; made by :func:`dispatch`."""

    def __init__(self, mux: CallMux, channel: int, info: CallInfo) -> None:
        self.channel = channel
        self.info = info
        self._mux = mux
        self.stdin = IncomingStream(self, FrameType.WINDOW, wire.INITIAL_WINDOW)
        self.stdout = OutputSink(self, FrameType.DATA, FrameType.EOF)
        self.stderr = OutputSink(self, FrameType.DATA_ERR, FrameType.EOF_ERR)
        self.error: QrexecError | None = None
        self._ended = asyncio.Event()

    @property
    def source(self) -> str:
        """The calling qube: the one at the other end of the link."""
        return self._mux.link.vm_name

    @property
    def done(self) -> bool:
        """Whether the call has ended (EXIT or ERROR sent, or the caller went away)."""
        return self._ended.is_set()

    async def wait_ended(self) -> None:
        """Until the call has ended."""
        await self._ended.wait()

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def _send(self, frame: Frame) -> None:
        self._mux._send(frame)

    def exit(self, status: int) -> None:
        """End the call with the remote's exit status."""
        self._finish(wire.json_frame(FrameType.EXIT, {"status": status}, self.channel))

    def refuse(self, message: str, *, refused: bool = True) -> None:
        """End the call with ERROR: ``refused`` when it never ran (policy, target)."""
        self._finish(wire.json_frame(FrameType.ERROR, {"message": message, "refused": refused},
                                     self.channel))

    def _finish(self, frame: Frame) -> None:
        if self.done:
            return
        with contextlib.suppress(QrexecError):
            self._send(frame)
        self._end()

    def _fail(self, error: QrexecError) -> None:
        if self.done:
            return
        self.error = error
        self._end()

    def _end(self) -> None:
        self._ended.set()
        if self._mux.incoming.get(self.channel) is self:
            del self._mux.incoming[self.channel]
        self.stdin._wake()
        self.stdout._wake()
        self.stderr._wake()

    def _on_frame(self, frame: Frame) -> None:
        kind = frame.type
        if kind == FrameType.DATA:
            if not self.stdin._feed(frame.payload):
                self.refuse("more stdin than the window allowed", refused=False)
                self.error = CallAborted(f"call {self.channel}: the qube broke the window")
        elif kind == FrameType.EOF:
            self.stdin._end()
        elif kind == FrameType.WINDOW:
            self.stdout._grant(wire.window_grant(frame))
        elif kind == FrameType.WINDOW_ERR:
            self.stderr._grant(wire.window_grant(frame))
        elif kind == FrameType.CLOSE:
            self.refuse("aborted by the caller", refused=False)
            self.error = CallAborted(f"call {self.channel} aborted by the caller")
        else:
            log.warning("%s: call %#x: unexpected frame %s", self.source, self.channel,
                        frame.name)


def dispatch(mux: CallMux, frame: Frame) -> None:
    """A frame on a channel of the agent's space (never raises: the link's reader runs it)."""
    channel = frame.channel
    call = mux.incoming.get(channel)
    if frame.type != FrameType.CALL:
        if call is None:
            return  # a call that ended: its late frames do not matter
        try:
            call._on_frame(frame)
        except Exception as exc:  # a bad frame must not stop the link's reader
            call.refuse(f"bad {frame.name}: {exc}", refused=False)
        return
    if call is not None:  # the agent reused a busy channel: end both
        call.refuse("CALL on a busy channel", refused=False)
        return
    try:
        info = parse_call(frame.payload)
    except ValueError as exc:
        _refuse(mux, channel, f"invalid request: {exc}")
        return
    if mux.on_incoming is None:
        _refuse(mux, channel, "calls from this qube are not served")
        return
    call = mux.incoming[channel] = IncomingCall(mux, channel, info)
    try:
        mux.on_incoming(call)
    except Exception as exc:
        log.exception("%s: the handler of call %#x failed", call.source, channel)
        call.refuse(f"internal error: {exc}")


def _refuse(mux: CallMux, channel: int, message: str) -> None:
    log.info("%s: call %#x refused: %s", mux.link.vm_name, channel, message)
    frame = wire.json_frame(FrameType.ERROR, {"message": message, "refused": True}, channel)
    with contextlib.suppress(QrexecError):
        mux._send(frame)
