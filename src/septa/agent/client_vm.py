"""``qrexec-client-vm TARGET SERVICE[+ARG]``: call a service in another qube, or in dom0.

Runs in the qube (standard library only). It connects to the agent's socket
(:mod:`septa.agent.outgoing`), sends the call, then relays its stdin to the remote
service and the service's stdout and stderr to its own, and exits with the service's
exit status. dom0's policy decides whether the call runs at all: a refused call prints
``Request refused`` on stderr and exits 126, as Qubes' ``qrexec-client-vm`` does.

Flow control is end to end: at most :data:`~septa.agent.wire.INITIAL_WINDOW` bytes of
stdin are in flight until dom0 grants more, and the remote's output is granted again
only once written out. ``--socket PATH`` names another agent socket (for tests).
"""

from __future__ import annotations

import os
import socket
import sys
import threading

from . import wire

SOCKET_PATH = "/run/septa/qrexec-agent.sock"
USAGE = "usage: qrexec-client-vm [--socket PATH] TARGET SERVICE[+ARGUMENT]"
STATUS_REFUSED = 126
STATUS_BROKEN = 255
_GRANT_THRESHOLD = wire.INITIAL_WINDOW // 4


class Client:
    """One call over a connected socket; ``fds`` are stdin, stdout and stderr."""

    def __init__(self, sock: socket.socket, fds: tuple[int, int, int] = (0, 1, 2)) -> None:
        self.sock = sock
        self.stdin, self.stdout, self.stderr = fds
        self.send_lock = threading.Lock()
        self.window = wire.INITIAL_WINDOW
        self.window_changed = threading.Condition()
        self.ended = False
        self.consumed = {wire.FrameType.WINDOW: 0, wire.FrameType.WINDOW_ERR: 0}
        self.broken_out: set[int] = set()

    def send(self, frame: wire.Frame) -> None:
        """Send one frame (from either thread)."""
        with self.send_lock:
            self.sock.sendall(frame.encode())

    def feed(self) -> None:
        """Send stdin as the window allows, then EOF (a thread of its own)."""
        try:
            while True:
                with self.window_changed:
                    while self.window <= 0 and not self.ended:
                        self.window_changed.wait()
                    if self.ended:
                        return
                    size = min(self.window, wire.MAX_PAYLOAD)
                try:
                    data = os.read(self.stdin, size)
                except OSError:
                    data = b""
                if not data:
                    break
                with self.window_changed:
                    self.window -= len(data)
                self.send(wire.Frame(wire.FrameType.DATA, 0, data))
            self.send(wire.Frame(wire.FrameType.EOF))
        except OSError:
            pass  # the call has ended

    def _output(self, fd: int, data: bytes, grant_type: int) -> None:
        if fd not in self.broken_out:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            except OSError:
                self.broken_out.add(fd)  # nobody reads it any more: discard the rest
        self.consumed[grant_type] += len(data)
        if self.consumed[grant_type] >= _GRANT_THRESHOLD:
            try:
                self.send(wire.window(0, self.consumed[grant_type], grant_type))
            except OSError:
                pass  # the call has ended: its EXIT is on the way
            self.consumed[grant_type] = 0

    def _end_output(self, fd: int) -> None:
        try:
            os.close(fd)
        except OSError:
            pass
        self.broken_out.add(fd)

    def receive(self) -> int:
        """Serve the frames of the call until it ends; the exit status."""
        decoder = wire.FrameDecoder()
        while True:
            data = self.sock.recv(wire.MAX_PAYLOAD + wire.HEADER_SIZE)
            if not data:
                self._message("qrexec-client-vm: the agent closed the connection")
                return STATUS_BROKEN
            for frame in decoder.feed(data):
                kind = frame.type
                if kind == wire.FrameType.DATA:
                    self._output(self.stdout, frame.payload, wire.FrameType.WINDOW)
                elif kind == wire.FrameType.DATA_ERR:
                    self._output(self.stderr, frame.payload, wire.FrameType.WINDOW_ERR)
                elif kind == wire.FrameType.EOF:
                    self._end_output(self.stdout)
                elif kind == wire.FrameType.WINDOW:
                    with self.window_changed:
                        self.window += wire.window_grant(frame)
                        self.window_changed.notify()
                elif kind == wire.FrameType.EXIT:
                    status = frame.json().get("status")
                    return status if isinstance(status, int) else STATUS_BROKEN
                elif kind == wire.FrameType.ERROR:
                    answer = frame.json()
                    if answer.get("refused"):
                        self._message("Request refused")
                        return STATUS_REFUSED
                    self._message(f"qrexec-client-vm: {answer.get('message', 'error')}")
                    return STATUS_BROKEN

    def _message(self, text: str) -> None:
        try:
            os.write(2, (text + "\n").encode("utf-8", "replace"))
        except OSError:
            pass

    def run(self, target: str, service: str, arg: str) -> int:
        """Make the call; the exit status."""
        self.send(wire.json_frame(wire.FrameType.CALL,
                                  {"target": target, "service": service, "arg": arg}))
        threading.Thread(target=self.feed, daemon=True).start()
        try:
            return self.receive()
        finally:
            with self.window_changed:
                self.ended = True
                self.window_changed.notify()


def main(argv: list[str] | None = None) -> int:
    """Entry point; the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = SOCKET_PATH
    if len(args) >= 2 and args[0] == "--socket":
        path = args[1]
        del args[:2]
    if args and args[0] == "--":
        del args[0]
    if len(args) != 2 or not args[1]:
        os.write(2, (USAGE + "\n").encode())
        return 2
    target, call = args
    service, _, arg = call.partition("+")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        os.write(2, f"qrexec-client-vm: cannot connect to the agent ({path}): {exc}\n".encode())
        return STATUS_BROKEN
    try:
        return Client(sock).run(target or "@default", service, arg)
    except (OSError, wire.FrameError) as exc:
        os.write(2, f"qrexec-client-vm: {exc}\n".encode())
        return STATUS_BROKEN
    finally:
        sock.close()
