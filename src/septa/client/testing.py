"""A stand-in for septad in tests: canned Admin API answers on a unix socket, calls recorded.

Typical use (with ``SEPTA_ROOT`` pointing at a temporary directory)::

    with FakeAdminServer(septa.paths.current().admin_socket) as server:
        server.expect("dom0", "admin.vm.List", ok="work class=AppVM state=Halted\\n")
        ...  # run client code
        assert server.calls == [Call("dom0", "admin.vm.List")]

An answer is looked up by (dest, method, arg, payload) first, then by
(dest, method, arg) with any payload, then by (dest, method) with any argument
(register those with ``arg=ANY``). A call nobody expected is recorded in
:attr:`FakeAdminServer.unexpected` and answered with a ``QubesException`` error frame.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

ANY = object()


@dataclass(frozen=True)
class Call:
    """One request as the fake daemon received it (an empty argument is None)."""

    dest: str
    method: str
    arg: str | None = None
    payload: bytes = b""
    source: str = "dom0"


Answer = bytes | Callable[[Call], bytes]


def ok_frame(content: bytes | str = b"") -> bytes:
    """A success answer carrying ``content``."""
    data = content.encode() if isinstance(content, str) else content
    return b"0\x00" + data


def error_frame(name: str, message: str = "", *args: str) -> bytes:
    """An error answer naming the exception class ``name``."""
    fields = [name, "", message, *args]
    return b"2\x00" + b"".join(f.encode() + b"\x00" for f in fields)


def event_frame(subject: str, event: str, **kwargs: str) -> bytes:
    """One frame of an event stream."""
    fields = [subject, event]
    for key, value in kwargs.items():
        fields += [key, value]
    return b"1\x00" + b"".join(f.encode() + b"\x00" for f in fields) + b"\x00"


def parse_request(data: bytes) -> Call:
    """Split raw request bytes into a :class:`Call`."""
    header, _, payload = data.partition(b"\x00")
    method_arg, source, _keyword, dest = header.decode().split(" ")
    method, _, arg = method_arg.partition("+")
    return Call(dest=dest, method=method, arg=arg or None, payload=payload, source=source)


class FakeAdminServer:
    """Serves canned answers to Admin API calls from a background thread."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.calls: list[Call] = []
        self.unexpected: list[Call] = []
        self.raw_requests: list[bytes] = []
        self._answers: dict[tuple[str, str, object, object], Answer] = {}
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- canned answers -------------------------------------------------------------

    def answer(
        self,
        dest: str,
        method: str,
        arg: str | None | object = None,
        payload: bytes | object = ANY,
        *,
        raw: Answer,
    ) -> None:
        """Answer a call with raw bytes, or with what a function of the call returns."""
        with self._lock:
            self._answers[(dest, method, arg or None, payload)] = raw

    def expect(
        self,
        dest: str,
        method: str,
        arg: str | None | object = None,
        payload: bytes | object = ANY,
        *,
        ok: bytes | str = b"",
    ) -> None:
        """Answer a call with success and the content ``ok``."""
        self.answer(dest, method, arg, payload, raw=ok_frame(ok))

    def fail(
        self,
        dest: str,
        method: str,
        arg: str | None | object = None,
        payload: bytes | object = ANY,
        *,
        exc: str,
        message: str = "",
    ) -> None:
        """Answer a call with the error ``exc`` and ``message``."""
        self.answer(dest, method, arg, payload, raw=error_frame(exc, message))

    def _lookup(self, call: Call) -> Answer | None:
        with self._lock:
            exact = self._answers.get((call.dest, call.method, call.arg, call.payload))
            if exact is not None:
                return exact
            any_payload = self._answers.get((call.dest, call.method, call.arg, ANY))
            if any_payload is not None:
                return any_payload
            return self._answers.get((call.dest, call.method, ANY, ANY))

    def methods(self) -> list[str]:
        """The methods called so far, in order."""
        return [c.method for c in self.calls]

    def requests(self) -> list[tuple[str, str, str | None]]:
        """(dest, method, arg) of every call so far, in order."""
        return [(c.dest, c.method, c.arg) for c in self.calls]

    # -- serving ----------------------------------------------------------------------

    def start(self) -> FakeAdminServer:
        """Listen on the socket and serve from a daemon thread."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.socket_path))
        sock.listen(64)
        sock.settimeout(1.0)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="fake-septad", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        self._stopping.set()
        if self._thread is not None:
            # Wake the accept() so the thread notices at once.
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as waker:
                waker.connect(str(self.socket_path))
            self._thread.join()
        if self._sock is not None:
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def __enter__(self) -> FakeAdminServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._stopping.is_set():
                conn.close()
                return
            with conn:
                conn.settimeout(5)
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        chunks = []
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError:
            return
        data = b"".join(chunks)
        with self._lock:
            self.raw_requests.append(data)
        try:
            call = parse_request(data)
        except (ValueError, UnicodeDecodeError):
            with contextlib.suppress(OSError):
                conn.sendall(error_frame("ProtocolError", "malformed request"))
            return
        with self._lock:
            self.calls.append(call)
        answer = self._lookup(call)
        if answer is None:
            with self._lock:
                self.unexpected.append(call)
            reply = error_frame("QubesException", f"unexpected call {call!r}")
        else:
            reply = answer(call) if callable(answer) else answer
        with contextlib.suppress(OSError):
            conn.sendall(reply)
