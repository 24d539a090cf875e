"""Calls from dom0 into qubes through septad's qrexec socket (``qvm-run``, ``qrexec-client``).

One connection is one call: an OPEN request, then stdin as DATA frames and EOF; the
answer is stdout (DATA), stderr (DATA_ERR), the exit status (EXIT) or an error (ERROR),
in the frames of :mod:`septa.agent.wire`. The target is started first unless
``autostart`` is off.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

import septa.paths
from septa.agent.wire import Frame, FrameDecoder, FrameType
from septa.client import errors

CHANNEL = 1
CHUNK = 65536


@dataclass
class CallRequest:
    """What to run where: a service (with argument) or a shell command line."""

    target: str
    service: str | None = None
    arg: str = ""
    command: str | None = None
    user: str | None = None
    autostart: bool = True

    def to_json(self) -> dict[str, object]:
        request: dict[str, object] = {"target": self.target, "autostart": self.autostart}
        if self.user:
            request["user"] = self.user
        if self.command is not None:
            request["command"] = self.command
        else:
            request["service"] = self.service
            request["arg"] = self.arg
        return request


def _send_input(sock: socket.socket, prefix: bytes, stdin: IO[bytes] | None) -> None:
    try:
        if prefix:
            for start in range(0, len(prefix), CHUNK):
                sock.sendall(Frame(FrameType.DATA, CHANNEL, prefix[start:start + CHUNK]).encode())
        if stdin is not None:
            while True:
                data = stdin.read1(CHUNK) if hasattr(stdin, "read1") else stdin.read(CHUNK)
                if not data:
                    break
                sock.sendall(Frame(FrameType.DATA, CHANNEL, data).encode())
        sock.sendall(Frame(FrameType.EOF, CHANNEL).encode())
    except OSError:
        pass


def _error(frame: Frame) -> errors.QubesException:
    try:
        info = frame.json()
    except ValueError:
        info = {}
    name = str(info.get("exception", "QubesException"))
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.QubesException)):
        cls = errors.QubesException
    return cls(str(info.get("message", "the call failed")))


def run_call(request: CallRequest, *, stdin: IO[bytes] | None = None, prefix: bytes = b"",
             stdout: Callable[[bytes], None] | None = None,
             stderr: Callable[[bytes], None] | None = None) -> int:
    """Run one call to its end; return the remote exit status.

    ``prefix`` is sent before ``stdin`` (qvm-run sends the shell command that way);
    output goes to the ``stdout`` / ``stderr`` callbacks (dropped when None).
    """
    path = septa.paths.current().qrexec_socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise errors.QubesDaemonCommunicationError(
                "cannot connect to septad's qrexec socket %s: %s", str(path), str(exc)) from None
        sock.sendall(Frame(FrameType.OPEN, CHANNEL,
                           json.dumps(request.to_json()).encode()).encode())
        feeder = threading.Thread(target=_send_input, args=(sock, prefix, stdin), daemon=True)
        feeder.start()
        decoder = FrameDecoder()
        while True:
            data = sock.recv(CHUNK)
            if not data:
                raise errors.QubesDaemonCommunicationError("the call ended without a status")
            for frame in decoder.feed(data):
                if frame.type == FrameType.DATA and stdout is not None:
                    stdout(frame.payload)
                elif frame.type == FrameType.DATA_ERR and stderr is not None:
                    stderr(frame.payload)
                elif frame.type == FrameType.EXIT:
                    return int(frame.json().get("status", 255))
                elif frame.type == FrameType.ERROR:
                    raise _error(frame)
    finally:
        sock.close()
