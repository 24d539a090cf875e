"""One Admin API call over the daemon's unix socket, and the parsing of its answer.

Each call opens a fresh connection to ``septa.paths.current().admin_socket``, sends
``<method>+<arg> dom0 name <dest>\\0<payload>``, shuts down its write side and reads
the answer to end of file (see ``spec/admin-api.md``). Event streams (``admin.Events``)
are read incrementally instead and yielded one event at a time.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NamedTuple

import septa.paths

from .errors import (
    QubesDaemonAccessError,
    QubesDaemonCommunicationError,
    QubesValueError,
    error_class,
)

OK_FRAME = b"0\x00"
EVENT_FRAME = b"1\x00"
ERROR_FRAME = b"2\x00"

_READ_SIZE = 1 << 16


class Event(NamedTuple):
    """One event of an ``admin.Events`` stream: the subject qube ('' for global), name, args."""

    subject: str
    name: str
    kwargs: dict[str, str]


def _check_field(what: str, value: str) -> None:
    if not value.isprintable() or " " in value:
        raise QubesValueError("%s must not contain spaces or control characters: '%s'", what, value)


def encode_request(dest: str, method: str, arg: str | None, payload: bytes | None) -> bytes:
    """The bytes a client sends for one call (header, NUL, payload).

    The header is split on spaces by the daemon, so a qube name, method or argument
    holding a space (or a control character) cannot be sent and is refused here.
    """
    _check_field("qube name", dest)
    _check_field("method", method)
    if arg:
        _check_field("argument", arg)
    header = f"{method}+{arg or ''} dom0 name {dest}\0".encode()
    return header + (payload or b"")


def raise_error_frame(data: bytes) -> None:
    """Raise the exception an error frame (``2\\0Name\\0traceback\\0message\\0args...``) names."""
    parts = data[len(ERROR_FRAME) :].split(b"\x00")
    if len(parts) < 3:
        raise QubesDaemonCommunicationError("Invalid error frame received from septad")
    name = parts[0].decode("ascii", "replace")
    message = parts[2].decode("utf-8", "replace")
    # Optional format arguments follow; the last field is empty (terminating NUL).
    args = tuple(p.decode("utf-8", "replace") for p in parts[3:-1])
    raise error_class(name)(message, *args)


def parse_response(data: bytes) -> bytes:
    """The content of a complete answer, or raise the error it carries."""
    if not data:
        raise QubesDaemonAccessError(
            "Got empty response from septad (the call may have been refused; see its log)"
        )
    if data.startswith(OK_FRAME):
        return data[len(OK_FRAME) :]
    if data.startswith(ERROR_FRAME):
        raise_error_frame(data)
    raise QubesDaemonCommunicationError("Invalid response format received from septad")


class Transport:
    """Performs Admin API calls against one daemon socket."""

    def __init__(self, socket_path: Path | None = None) -> None:
        self._socket_path = socket_path

    @property
    def socket_path(self) -> Path:
        """The socket this transport talks to (resolved from SEPTA_ROOT when not given)."""
        if self._socket_path is None:
            return septa.paths.current().admin_socket
        return self._socket_path

    def _connect(self) -> socket.socket:
        path = self.socket_path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            sock.close()
            raise QubesDaemonCommunicationError(
                "septad is not running (no socket at %s)", str(path)
            ) from None
        except ConnectionRefusedError:
            sock.close()
            raise QubesDaemonCommunicationError(
                "septad is not running (nothing listens on %s)", str(path)
            ) from None
        except PermissionError:
            sock.close()
            raise QubesDaemonCommunicationError(
                "permission denied to connect to septad at %s", str(path)
            ) from None
        except OSError as e:
            sock.close()
            raise QubesDaemonCommunicationError(
                "cannot connect to septad at %s: %s", str(path), e.strerror or str(e)
            ) from None
        return sock

    def _send(self, sock: socket.socket, request: bytes) -> None:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except BrokenPipeError:
            # The daemon answered (probably with an error) before reading everything.
            pass

    def call_raw(
        self, dest: str, method: str, arg: str | None = None, payload: bytes | None = None
    ) -> bytes:
        """Perform one call and return the whole answer, unparsed."""
        request = encode_request(dest, method, arg, payload)
        with self._connect() as sock:
            self._send(sock, request)
            chunks = []
            while True:
                try:
                    chunk = sock.recv(_READ_SIZE)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)

    def call(
        self, dest: str, method: str, arg: str | None = None, payload: bytes | None = None
    ) -> bytes:
        """Perform one call and return its content; raise the daemon's error if any."""
        return parse_response(self.call_raw(dest, method, arg, payload))

    def events(
        self,
        dest: str = "dom0",
        method: str = "admin.Events",
        arg: str | None = None,
        deadline: float | None = None,
    ) -> Generator[Event, None, None]:
        """Yield the events of a stream call until the daemon closes it.

        With a ``deadline`` (a :func:`time.monotonic` value), :class:`TimeoutError`
        is raised when no more events arrive before it.
        """
        with self._connect() as sock:
            self._send(sock, encode_request(dest, method, arg, None))
            yield from _read_events(sock, deadline)


def _read_events(sock: socket.socket, deadline: float | None = None) -> Iterator[Event]:
    reader = _EventReader()
    while True:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no event before the deadline")
            sock.settimeout(remaining)
        chunk = sock.recv(_READ_SIZE)
        if not chunk:
            reader.finish()
            return
        yield from reader.feed(chunk)


class _EventReader:
    """Incremental parser of event frames."""

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False

    def feed(self, chunk: bytes) -> Iterator[Event]:
        self._buffer += chunk
        while True:
            if not self._started and self._buffer.startswith(ERROR_FRAME):
                # The stream was refused; the frame is complete at EOF (see finish()).
                return
            event = self._take_event()
            if event is None:
                return
            self._started = True
            yield event

    def finish(self) -> None:
        if self._buffer.startswith(ERROR_FRAME):
            raise_error_frame(self._buffer)
        if self._buffer:
            raise QubesDaemonCommunicationError("Truncated event received from septad")

    def _take_event(self) -> Event | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        if not buf.startswith(EVENT_FRAME):
            raise QubesDaemonCommunicationError("Invalid event frame received from septad")
        fields: list[bytes] = []
        pos = 2
        while True:
            end = buf.find(b"\x00", pos)
            if end < 0:
                return None
            value = buf[pos:end]
            pos = end + 1
            # subject and name always come first; after them an empty key ends the event
            if len(fields) >= 2 and len(fields) % 2 == 0 and value == b"":
                break
            fields.append(value)
        self._buffer = buf[pos:]
        text = [f.decode("utf-8", "replace") for f in fields]
        kwargs = dict(zip(text[2::2], text[3::2], strict=True))
        return Event(subject=text[0], name=text[1], kwargs=kwargs)


__all__ = [
    "Event",
    "Transport",
    "encode_request",
    "parse_response",
    "raise_error_frame",
]
