"""Calls that processes in the qube make (``qrexec-client-vm``), relayed to the host.

The agent listens on a unix socket (:data:`SOCKET_PATH`, mode 0666: any user of the
qube may call; dom0's policy decides). One connection is one call, in the frames of
:mod:`septa.agent.wire` with channel 0:

- the client sends CALL (JSON {"target", "service", "arg"}), then its stdin (DATA,
  EOF) and its grants of the remote's stdout and stderr (WINDOW, WINDOW_ERR); closing
  the connection before the end aborts the call;
- the agent passes on what the host sends for the call (DATA, DATA_ERR, EOF, EOF_ERR,
  WINDOW, and last EXIT or ERROR), then closes the connection.

The agent forwards these frames on a channel of its own space
(:data:`~septa.agent.wire.AGENT_CHANNEL_BIT` set), rewriting only the channel and
refusing other frame types: windows are kept end to end by the client and dom0 (which
does not trust the qube anyway). Each connection has a reader thread (client -> host)
and a writer thread (host -> client), so a slow client never stalls the agent's port.
When the host disconnects, every call ends with ERROR.
"""

from __future__ import annotations

import collections
import os
import socket
import threading

from . import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

SOCKET_PATH = "/run/septa/qrexec-agent.sock"  # main.CALL_SOCKET
#: What a client may send after CALL.
CLIENT_FRAMES = (wire.FrameType.DATA, wire.FrameType.EOF, wire.FrameType.WINDOW,
                 wire.FrameType.WINDOW_ERR)
#: The frames that end a call (host -> agent).
FINAL_FRAMES = (wire.FrameType.EXIT, wire.FrameType.ERROR)
_LOCAL_CHANNEL = 0
_DONE = object()


class Connection:
    """One client's call."""

    def __init__(self, relay: Outgoing, sock: socket.socket) -> None:
        self.relay = relay
        self.sock = sock
        self.channel = 0
        self.finished = False
        self.queue: collections.deque[object] = collections.deque()
        self.cond = threading.Condition()
        self.threads = 2

    def start(self) -> None:
        """Serve the connection in two threads."""
        threading.Thread(target=self._read, name="septa-call-in", daemon=True).start()
        threading.Thread(target=self._write, name="septa-call-out", daemon=True).start()

    def deliver(self, frame: wire.Frame) -> None:
        """Queue a frame for the client (from any thread); the last one ends the call."""
        with self.cond:
            self.queue.append(wire.Frame(frame.type, _LOCAL_CHANNEL, frame.payload))
            if frame.type in FINAL_FRAMES:
                self.finished = True
                self.queue.append(_DONE)
            self.cond.notify()

    def fail(self, message: str, refused: bool = False) -> None:
        """End the call with ERROR to the client."""
        self.deliver(wire.json_frame(wire.FrameType.ERROR,
                                     {"message": message, "refused": refused}))

    def stop(self) -> None:
        """End the writer thread after what is queued."""
        with self.cond:
            self.finished = True
            self.queue.append(_DONE)
            self.cond.notify()

    def _write(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.queue:
                        self.cond.wait()
                    item = self.queue.popleft()
                if not isinstance(item, wire.Frame):
                    break
                self.sock.sendall(item.encode())
        except OSError:
            pass  # the client went away: its reader sees it too
        finally:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._release()

    def _release(self) -> None:
        """One of the two threads is done; the last one closes the socket."""
        with self.cond:
            self.threads -= 1
            last = self.threads == 0
        if last:
            self.sock.close()

    def _read(self) -> None:
        decoder = wire.FrameDecoder()
        try:
            while True:
                data = self.sock.recv(wire.MAX_PAYLOAD + wire.HEADER_SIZE)
                if not data:
                    break
                for frame in decoder.feed(data):
                    if not self._from_client(frame):
                        return
        except (OSError, wire.FrameError) as exc:
            self.relay.log(f"outgoing call: client error: {exc}")
        finally:
            self.relay.client_gone(self)
            self._release()

    def _from_client(self, frame: wire.Frame) -> bool:
        """Pass on one frame; False when the call is over for this connection."""
        if self.finished:
            return False
        if self.channel == 0:
            if frame.type != wire.FrameType.CALL:
                self.fail("the first frame must be CALL", refused=True)
                return False
            return self.relay.call(self, frame.payload)
        if frame.type not in CLIENT_FRAMES:
            self.fail(f"frame {frame.name} is not allowed in a call")
            return False
        return self.relay.forward(wire.Frame(frame.type, self.channel, frame.payload))


class Outgoing:
    """The agent's socket for calls from the qube and the calls in progress."""

    def __init__(self, send: Callable[[wire.Frame], None], log: Callable[[str], None],
                 path: str = SOCKET_PATH) -> None:
        self._send = send
        self.log = log
        self.path = path
        self.calls: dict[int, Connection] = {}
        self.lock = threading.Lock()
        self.host_connected = False
        self._next = 1
        self.server: socket.socket | None = None

    def listen(self) -> None:
        """Make the socket (replacing a stale one) and accept clients in a thread."""
        os.makedirs(os.path.dirname(self.path) or ".", 0o755, exist_ok=True)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.path)
        os.chmod(self.path, 0o666)
        server.listen(64)
        self.server = server
        threading.Thread(target=self._accept, name="septa-call-listen", daemon=True).start()

    def close(self) -> None:
        """Stop accepting clients (the calls in progress go on)."""
        if self.server is not None:
            self.server.close()
            self.server = None

    def _accept(self) -> None:
        server = self.server
        while server is not None:
            try:
                sock, _ = server.accept()
            except OSError:
                return  # closed
            Connection(self, sock).start()

    # --- the host side (main thread) -----------------------------------------------------

    def connected(self) -> None:
        """A host connected: calls can go to it."""
        with self.lock:
            self.host_connected = True

    def disconnected(self) -> None:
        """The host went away: every call ends."""
        with self.lock:
            self.host_connected = False
            calls = list(self.calls.values())
            self.calls.clear()
        for conn in calls:
            conn.fail("the host went away")

    def handle(self, frame: wire.Frame) -> None:
        """A frame from the host on a channel of this space."""
        with self.lock:
            conn = self.calls.get(frame.channel)
            if conn is not None and frame.type in FINAL_FRAMES:
                del self.calls[frame.channel]
        if conn is not None:
            conn.deliver(frame)

    # --- the connections' side (their reader threads) ------------------------------------

    def call(self, conn: Connection, payload: bytes) -> bool:
        """Start the call of ``conn`` on a new channel."""
        with self.lock:
            if not self.host_connected:
                conn.fail("the host is not connected", refused=True)
                return False
            while True:
                channel = wire.AGENT_CHANNEL_BIT | self._next
                self._next = self._next + 1 if self._next < wire.AGENT_CHANNEL_BIT - 1 else 1
                if channel not in self.calls:
                    break
            conn.channel = channel
            self.calls[channel] = conn
        return self.forward(wire.Frame(wire.FrameType.CALL, channel, payload))

    def forward(self, frame: wire.Frame) -> bool:
        """Send a frame of a call to the host; False (and the call ended) if it cannot."""
        try:
            self._send(frame)
            return True
        except (OSError, wire.FrameError) as exc:
            with self.lock:
                conn = self.calls.pop(frame.channel, None)
            if conn is not None:
                conn.fail(f"cannot reach the host: {exc}")
            return False

    def client_gone(self, conn: Connection) -> None:
        """The client closed its connection (or broke the protocol): abort its call if
        the host has not ended it, and let the writer thread go."""
        with self.lock:
            live = conn.channel != 0 and self.calls.get(conn.channel) is conn
        if live:
            self.forward(wire.Frame(wire.FrameType.CLOSE, conn.channel))
        conn.stop()
