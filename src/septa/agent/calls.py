"""Serve calls (channels >= 1): run each request's process and move its bytes (agent side).

The frame rules are in :mod:`septa.agent.wire`, the requests in
:mod:`septa.agent.request`. :mod:`septa.agent.main` imports this module at the first
call frame, not at start (it imports ``subprocess``, ``selectors`` and ``threading``).

The agent's main thread reads the port. It validates OPEN requests itself, so that a
refused request gets its ERROR at once, and queues every other call frame for one I/O
thread, which spawns the processes (in a session of their own) and moves the bytes
between their pipes and the port with a selector:

- stdin: DATA is buffered (never more than the window the agent granted) and written to
  the pipe as the process reads it; the bytes it takes are granted again with WINDOW.
- stdout and stderr: a pipe is read only while the host's window for it is open, at most
  that many bytes, so output waits in the pipe (and the process blocks) while the host's
  consumer is slow.
- exit: a pidfd tells when the process has exited (polled where pidfds are missing);
  EXIT follows once stdout and stderr have reached EOF.

The main thread keeps serving HELLO, PING and SHUTDOWN_REQUEST meanwhile; both threads
send through the agent's locked ``send``.
"""

from __future__ import annotations

import collections
import os
import selectors
import signal
import subprocess
import threading

from . import wire
from .request import (
    STATUS_CANNOT_RUN,
    STATUS_NOT_FOUND,
    CallConfig,
    Request,
    RequestError,
    parse_request,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

#: How often exits are polled when pidfds are not available.
POLL_INTERVAL = 0.05
#: How long :meth:`CallServer.stop` waits for the I/O thread.
STOP_TIMEOUT = 10.0

_STOP = object()


class Output:
    """The process's stdout or stderr: read only as far as the host's window allows."""

    __slots__ = ("fd", "window", "data_type", "eof_type", "done")

    def __init__(self, data_type: int, eof_type: int) -> None:
        self.fd: int | None = None
        self.window = wire.INITIAL_WINDOW
        self.data_type = data_type
        self.eof_type = eof_type
        self.done = False


class Call:
    """One running call."""

    __slots__ = ("channel", "label", "proc", "pidfd", "status", "stdin_fd", "stdin_buf",
                 "stdin_eof", "stdin_window", "stdin_consumed", "out", "err", "aborted")

    def __init__(self, channel: int, label: str, stdin_window: int) -> None:
        self.channel = channel
        self.label = label
        self.proc: subprocess.Popen[bytes] | None = None
        self.pidfd: int | None = None
        self.status: int | None = None
        self.stdin_fd: int | None = None
        self.stdin_buf = bytearray()
        self.stdin_eof = False
        #: bytes the host may still send; bytes taken by the process since the last grant
        self.stdin_window = stdin_window
        self.stdin_consumed = 0
        self.out = Output(wire.FrameType.DATA, wire.FrameType.EOF)
        self.err = Output(wire.FrameType.DATA_ERR, wire.FrameType.EOF_ERR)
        self.aborted = False


def exit_status(returncode: int) -> int:
    """A shell's view of a return code: 128 + the signal for a process a signal killed."""
    return 128 - returncode if returncode < 0 else returncode


class CallServer:
    """The calls of one host connection. :meth:`handle` runs in the main thread; the rest
    in the I/O thread, started at the first accepted OPEN."""

    def __init__(
        self,
        send: Callable[[wire.Frame], None],
        log: Callable[[str], None],
        config: CallConfig | None = None,
    ) -> None:
        self._send = send
        self.log = log
        self.config = config if config is not None else CallConfig()
        self.calls: dict[int, Call] = {}
        self.inbox: collections.deque[object] = collections.deque()
        self.thread: threading.Thread | None = None
        self.broken = False
        #: the most stdin bytes buffered for one call (the window bounds it)
        self.stdin_high_water = 0
        self._grant_threshold = max(1, self.config.stdin_window // 4)
        self._selector: selectors.BaseSelector | None = None
        self._registered: dict[int, int] = {}
        self._wake_r = self._wake_w = -1
        self._poll = False

    # --- main thread ---------------------------------------------------------------------

    def handle(self, frame: wire.Frame) -> None:
        """Take one call frame from the host (main thread)."""
        if frame.type == wire.FrameType.OPEN:
            try:
                request = parse_request(frame.payload, self.config)
            except RequestError as exc:
                self.error(frame.channel, f"OPEN refused: {exc}")
                return
            if self.thread is None or not self.thread.is_alive():
                self._start()
            self._post((frame.channel, request))
        elif self.thread is not None:
            self._post(frame)

    def stop(self) -> None:
        """Kill every call and end the I/O thread (the host went away)."""
        if self.thread is None or self._wake_w < 0:
            return
        self.broken = True  # nothing more for this connection
        self._post(_STOP)
        self.thread.join(STOP_TIMEOUT)
        if self.thread.is_alive():
            self.log("the call thread did not stop")
        else:
            self._close_wake()

    def _close_wake(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _start(self) -> None:
        self._close_wake()  # of an I/O thread that failed
        self.broken = False
        self.inbox.clear()
        self._registered.clear()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        self.thread = threading.Thread(target=self._run, name="septa-calls", daemon=True)
        self.thread.start()

    def _post(self, item: object) -> None:
        if self._wake_w < 0:
            return  # stopped
        self.inbox.append(item)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the thread is awake already

    # --- sending (both threads) ----------------------------------------------------------

    def send(self, frame: wire.Frame) -> None:
        """Send a frame unless the host is gone."""
        if self.broken:
            return
        try:
            self._send(frame)
        except OSError as exc:
            self.broken = True
            self.log(f"cannot send to the host: {exc}")

    def error(self, channel: int, message: str) -> None:
        """Tell the host that a call frame was refused."""
        self.log(f"channel {channel}: {message}")
        self.send(wire.json_frame(wire.FrameType.ERROR, {"message": message}, channel))

    # --- the I/O thread ------------------------------------------------------------------

    def _run(self) -> None:
        assert self._selector is not None
        try:
            if os.getpriority(os.PRIO_PROCESS, 0) < 0:  # this thread only, on Linux
                os.setpriority(os.PRIO_PROCESS, 0, 0)  # calls get no boot-time priority
        except OSError:
            pass
        try:
            while self._take_inbox():
                for call in list(self.calls.values()):
                    self._update(call)
                for key, _ in self._selector.select(POLL_INTERVAL if self._poll else None):
                    key.data()
                if self._poll:
                    for call in list(self.calls.values()):
                        if call.pidfd is None and call.proc is not None:
                            self._reap(call)
        except Exception as exc:  # a bug: end the calls rather than hang them
            for channel in list(self.calls):
                self.error(channel, f"call aborted: the agent's call thread failed: {exc!r}")
        finally:
            self._shutdown()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def _take_inbox(self) -> bool:
        while self.inbox:
            item = self.inbox.popleft()
            if item is _STOP:
                return False
            if isinstance(item, tuple):
                self._open(*item)
            elif isinstance(item, wire.Frame):
                self._frame(item)
        return True

    def _open(self, channel: int, request: Request) -> None:
        if channel in self.calls:
            self.error(channel, f"OPEN refused: channel {channel} is busy")
            return
        call = Call(channel, request.label, self.config.stdin_window)
        self.calls[channel] = call
        if request.argv is None:
            self._fail_start(call, request.status, request.message)
            return
        pipes: list[tuple[int, int]] = []
        try:
            while len(pipes) < 3:
                pipes.append(os.pipe())
        except OSError as exc:  # out of file descriptors
            for fd in (fd for pipe in pipes for fd in pipe):
                os.close(fd)
            self._fail_start(call, STATUS_CANNOT_RUN,
                             f"septa-agent: cannot run {request.label}: {exc}")
            return
        (in_r, in_w), (out_r, out_w), (err_r, err_w) = pipes
        ids: dict[str, object] = {}
        if os.geteuid() == 0:
            user = request.user
            ids = {"user": user.uid, "group": user.gid, "extra_groups": user.groups}
        try:
            call.proc = subprocess.Popen(  # type: ignore[call-overload]
                request.argv, stdin=in_r, stdout=out_w, stderr=err_w, cwd=request.cwd,
                env=request.env, close_fds=True, start_new_session=True, **ids,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            status = STATUS_NOT_FOUND if isinstance(exc, FileNotFoundError) else STATUS_CANNOT_RUN
            self._fail_start(call, status, f"septa-agent: cannot run {request.label}: {exc}")
            return
        finally:
            for fd in (in_r, out_w, err_w):
                os.close(fd)
        for fd in (in_w, out_r, err_r):
            os.set_blocking(fd, False)
        call.stdin_fd, call.out.fd, call.err.fd = in_w, out_r, err_r
        assert call.proc is not None
        try:
            call.pidfd = os.pidfd_open(call.proc.pid)
        except (AttributeError, OSError):
            self._poll = True

    def _fail_start(self, call: Call, status: int, message: str) -> None:
        self.log(f"channel {call.channel}: {message}")
        line = (message + "\n").encode("utf-8", "replace")[: wire.INITIAL_WINDOW]
        channel = call.channel
        self.send(wire.Frame(wire.FrameType.DATA_ERR, channel, line[: wire.MAX_PAYLOAD]))
        self.send(wire.Frame(wire.FrameType.EOF, channel))
        self.send(wire.Frame(wire.FrameType.EOF_ERR, channel))
        self.send(wire.json_frame(wire.FrameType.EXIT, {"status": status}, channel))
        del self.calls[channel]

    def _frame(self, frame: wire.Frame) -> None:
        call = self.calls.get(frame.channel)
        if call is None or call.aborted:
            return  # a call that ended (or was refused): its late frames do not matter
        kind = frame.type
        if kind == wire.FrameType.DATA:
            self._stdin_data(call, frame.payload)
        elif kind == wire.FrameType.EOF:
            call.stdin_eof = True
            if not call.stdin_buf:
                self._close_stdin(call)
        elif kind in (wire.FrameType.WINDOW, wire.FrameType.WINDOW_ERR):
            try:
                grant = wire.window_grant(frame)
            except wire.FrameError as exc:
                self._violation(call, str(exc))
                return
            (call.out if kind == wire.FrameType.WINDOW else call.err).window += grant
        elif kind == wire.FrameType.CLOSE:
            self._abort(call)
        elif kind == wire.FrameType.OPEN:
            self.error(call.channel, f"OPEN refused: channel {call.channel} is busy")

    def _violation(self, call: Call, message: str) -> None:
        self.error(call.channel, f"call aborted: {message}")
        self._abort(call)

    def _stdin_data(self, call: Call, data: bytes) -> None:
        if len(data) > call.stdin_window:
            self._violation(call, f"{len(data)} bytes of stdin, more than the "
                                  f"{call.stdin_window} granted")
            return
        call.stdin_window -= len(data)
        if call.stdin_fd is None:  # the process closed its stdin: discard, and grant again
            call.stdin_consumed += len(data)
            self._grant(call)
            return
        call.stdin_buf += data
        self.stdin_high_water = max(self.stdin_high_water, len(call.stdin_buf))

    def _write_stdin(self, call: Call) -> None:
        assert call.stdin_fd is not None
        try:
            written = os.write(call.stdin_fd, call.stdin_buf[: wire.MAX_PAYLOAD])
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the process does not read any more
            written = len(call.stdin_buf)
            self._close_stdin(call)
        del call.stdin_buf[:written]
        call.stdin_consumed += written
        self._grant(call)
        if not call.stdin_buf and call.stdin_eof:
            self._close_stdin(call)

    def _grant(self, call: Call) -> None:
        if call.stdin_consumed >= self._grant_threshold:
            self.send(wire.window(call.channel, call.stdin_consumed))
            call.stdin_window += call.stdin_consumed
            call.stdin_consumed = 0

    def _close_stdin(self, call: Call) -> None:
        if call.stdin_fd is not None:
            self._close(call.stdin_fd)
            call.stdin_fd = None

    def _read_output(self, call: Call, out: Output) -> None:
        assert out.fd is not None
        try:
            data = os.read(out.fd, min(out.window, wire.MAX_PAYLOAD))
        except BlockingIOError:
            return
        except OSError as exc:
            self.log(f"channel {call.channel}: reading the output failed: {exc}")
            data = b""
        if data:
            out.window -= len(data)
            self.send(wire.Frame(out.data_type, call.channel, data))
            return
        self._close(out.fd)
        out.fd = None
        out.done = True
        self.send(wire.Frame(out.eof_type, call.channel))

    def _reap(self, call: Call) -> None:
        assert call.proc is not None
        returncode = call.proc.poll()
        if returncode is None:
            return
        call.status = exit_status(returncode)
        if call.pidfd is not None:
            self._close(call.pidfd)
            call.pidfd = None

    def _abort(self, call: Call) -> None:
        """Kill the call's process (and its session) and stop moving its bytes; EXIT
        follows when the process is reaped."""
        call.aborted = True
        if call.proc is not None and call.status is None:
            try:
                os.killpg(call.proc.pid, signal.SIGKILL)
            except OSError:
                call.proc.kill()
        self._close_stdin(call)
        call.stdin_buf.clear()
        for out in (call.out, call.err):
            if out.fd is not None:
                self._close(out.fd)
                out.fd = None
            out.done = True

    def _update(self, call: Call) -> None:
        """Register the call's file descriptors for what they wait for now; end the call
        when it is complete."""
        if call.stdin_fd is not None:
            self._want(call.stdin_fd, selectors.EVENT_WRITE if call.stdin_buf else 0,
                       lambda: self._write_stdin(call))
        for out in (call.out, call.err):
            if out.fd is not None:
                self._want(out.fd, selectors.EVENT_READ if out.window > 0 else 0,
                           self._reader(call, out))
        if call.pidfd is not None:
            self._want(call.pidfd, selectors.EVENT_READ, lambda: self._reap(call))
        if call.status is not None and call.out.done and call.err.done:
            self._close_stdin(call)
            self.send(wire.json_frame(wire.FrameType.EXIT, {"status": call.status},
                                      call.channel))
            del self.calls[call.channel]

    def _reader(self, call: Call, out: Output) -> Callable[[], None]:
        return lambda: self._read_output(call, out)

    def _want(self, fd: int, events: int, callback: Callable[[], None]) -> None:
        assert self._selector is not None
        current = self._registered.get(fd, 0)
        if events == current:
            return
        if not events:
            self._selector.unregister(fd)
            del self._registered[fd]
        elif not current:
            self._selector.register(fd, events, callback)
            self._registered[fd] = events
        else:
            self._selector.modify(fd, events, callback)
            self._registered[fd] = events

    def _close(self, fd: int) -> None:
        if self._registered.pop(fd, 0):
            assert self._selector is not None
            self._selector.unregister(fd)
        os.close(fd)

    def _shutdown(self) -> None:
        """Kill every call, reap the processes, release the thread's resources (nothing
        is sent: the host went away, or the calls got their ERROR)."""
        for call in list(self.calls.values()):
            self._abort(call)
        for call in list(self.calls.values()):
            if call.proc is not None:
                try:
                    call.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.log(f"channel {call.channel}: {call.label} does not die")
            if call.pidfd is not None:
                self._close(call.pidfd)
                call.pidfd = None
        self.calls.clear()
        if self._selector is not None:
            self._selector.close()
            self._selector = None
