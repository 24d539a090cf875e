"""The agent's main loop: introduce itself to the host, then serve control frames.

On every (re)connection of the host it sends HELLO at once, and READY as soon as the qube
has finished booting (``septa-boot-complete.service``: basic.target reached and the
private volume mounted), so the host knows both when the agent is alive and when the
qube can run things. It answers PING with PONG (before READY too), powers the qube off
on SHUTDOWN_REQUEST, re-introduces itself when the host sends HELLO, and answers frames
it does not serve with ERROR. A broken frame stream cannot be resynchronised, so after a
protocol error the agent ignores the host until it reconnects.

Frames of calls (OPEN, DATA, EOF, WINDOW, WINDOW_ERR, CLOSE on channels >= 1) go to a
:class:`~septa.agent.calls.CallServer`, imported at the first of them, which runs the
calls in a thread of its own while this loop keeps serving the control channel; the calls
of a connection are killed when the host disconnects.

With a ``call_socket``, the agent also serves the calls processes in the qube make
(``qrexec-client-vm``) on that unix socket, made after the first READY
(:mod:`septa.agent.outgoing`); frames of their channels (``AGENT_CHANNEL_BIT`` set) go
there.

Startup time matters (the host waits for READY while the qube boots, under TCG ~15x
slower than on the host): this module and its imports avoid ``dataclasses``,
``logging``, ``argparse``, ``typing`` and ``json``.
"""

from __future__ import annotations

import _thread
import os
import sys

from . import system, wire
from .port import Port, VirtioPort

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .calls import CallServer
    from .outgoing import Outgoing
    from .request import CallConfig

USAGE = "usage: python3 -m septa.agent [--port DEVICE | --name PORT_NAME]"

#: Where processes in the qube call services elsewhere (:mod:`septa.agent.outgoing`).
CALL_SOCKET = "/run/septa/qrexec-agent.sock"

#: How often the agent checks for the end of the boot while it has not sent READY.
BOOT_POLL = 0.1

#: Frame types of calls, served on channels >= 1 by the call server.
CALL_FRAMES = (
    wire.FrameType.OPEN, wire.FrameType.DATA, wire.FrameType.EOF, wire.FrameType.WINDOW,
    wire.FrameType.WINDOW_ERR, wire.FrameType.CLOSE,
)


class Agent:
    """One agent serving one port. The system functions are injectable (for tests).

    ``boot_complete`` tells whether READY may be sent; ``on_ready`` runs after each READY
    (the real agent drops its boot priority then). ``call_config`` says where services
    and users are found (the system's, by default). With ``preload``, the first READY
    also starts importing the call server in a thread, so that the first call does not
    wait for those imports (~0.3 s in a TCG qube).
    """

    def __init__(
        self,
        port: Port,
        hostname: Callable[[], str] = system.hostname,
        uptime: Callable[[], float] = system.uptime,
        poweroff: Callable[[], None] = system.poweroff,
        log: Callable[[str], None] = system.log,
        boot_complete: Callable[[], bool] = system.boot_complete,
        on_ready: Callable[[], None] | None = None,
        call_config: CallConfig | None = None,
        preload: bool = False,
        call_socket: str | None = None,
    ) -> None:
        self.port = port
        self.hostname = hostname
        self.uptime = uptime
        self.poweroff = poweroff
        self.log = log
        self.boot_complete = boot_complete
        self.on_ready = on_ready
        self.call_config = call_config
        self.preload = preload
        self.call_socket = call_socket
        self.outgoing: Outgoing | None = None
        self.calls: CallServer | None = None
        self.decoder = wire.FrameDecoder()
        self.ready_sent = False
        self._send_lock = _thread.allocate_lock()

    def send(self, frame: wire.Frame) -> None:
        """Send one frame to the host (from any thread: frames are never interleaved)."""
        data = frame.encode()
        with self._send_lock:
            self.port.write(data)

    def call_server(self) -> CallServer:
        """The call server of this connection (made, and its module imported, on first use)."""
        if self.calls is None:
            from .calls import CallServer

            self.calls = CallServer(self.send, self.log, self.call_config)
        return self.calls

    def stop_calls(self) -> None:
        """Kill the calls of this connection."""
        if self.calls is not None:
            self.calls.stop()

    def introduce(self) -> None:
        """Send HELLO, then READY if the qube has booted (else :meth:`serve_connection`
        sends it when it has)."""
        self.send(wire.hello(self.hostname()))
        self.ready_sent = False
        self.maybe_ready()

    def maybe_ready(self) -> None:
        """Send READY once the qube has finished booting."""
        if self.ready_sent or not self.boot_complete():
            return
        self.send(wire.json_frame(wire.FrameType.READY, {"uptime": self.uptime()}))
        self.ready_sent = True
        if self.on_ready is not None:
            self.on_ready()
        if self.preload:
            self.preload = False
            _thread.start_new_thread(self._preload_calls, ())
        if self.call_socket is not None and self.outgoing is None:
            from .outgoing import Outgoing

            self.outgoing = Outgoing(self.send, self.log, self.call_socket)
            self.outgoing.connected()
            try:
                self.outgoing.listen()
            except OSError as exc:
                self.log(f"cannot serve calls from the qube on {self.call_socket}: {exc}")

    def _preload_calls(self) -> None:
        try:
            import json  # noqa: F401  (what parse_request imports)
            import pwd  # noqa: F401

            from . import calls  # noqa: F401
        except Exception as exc:  # the first call will say more
            self.log(f"preloading the call server failed: {exc!r}")

    def error(self, message: str, channel: int = wire.CONTROL_CHANNEL) -> None:
        """Tell the host that a frame could not be served."""
        self.log(message)
        self.send(wire.json_frame(wire.FrameType.ERROR, {"message": message}, channel))

    def handle(self, frame: wire.Frame) -> None:
        """Serve one frame from the host."""
        if frame.type == wire.FrameType.PING:
            self.send(wire.Frame(wire.FrameType.PONG, frame.channel, frame.payload))
        elif frame.type == wire.FrameType.HELLO:
            self.introduce()
        elif frame.type == wire.FrameType.SHUTDOWN_REQUEST:
            self.poweroff()
        elif frame.type == wire.FrameType.PONG:
            pass
        elif frame.channel & wire.AGENT_CHANNEL_BIT:
            if self.outgoing is not None:
                self.outgoing.handle(frame)
        elif frame.channel != wire.CONTROL_CHANNEL and frame.type in CALL_FRAMES:
            self.call_server().handle(frame)
        else:
            self.error(f"frame {frame.name} is not served by this agent", frame.channel)

    def serve_connection(self) -> None:
        """Serve the connected host until it disconnects."""
        self.decoder.reset()
        self.calls = None
        if self.outgoing is not None:
            self.outgoing.connected()
        try:
            self._serve()
        finally:
            if self.outgoing is not None:
                self.outgoing.disconnected()
            self.stop_calls()

    def _serve(self) -> None:
        self.introduce()
        while True:
            data = self.port.read(None if self.ready_sent else BOOT_POLL)
            if data is None:
                self.maybe_ready()
                continue
            if not data:
                self.log("host disconnected")
                return
            try:
                frames = self.decoder.feed(data)
            except wire.FrameError as exc:
                self.error(f"protocol error: {exc}")
                self.stop_calls()
                self.drain()
                return
            for frame in frames:
                self.handle(frame)
            self.maybe_ready()

    def drain(self) -> None:
        """Discard input until the host disconnects."""
        while self.port.read():
            pass

    def run(self, connections: int | None = None) -> None:
        """Serve host connections one after another (forever, or ``connections`` times)."""
        served = 0
        while connections is None or served < connections:
            self.port.wait_connected()
            self.log("host connected")
            self.serve_connection()
            served += 1


def parse_args(argv: list[str]) -> VirtioPort:
    """The port named on the command line (``--port DEVICE`` or ``--name NAME``)."""
    if not argv:
        return VirtioPort(name=wire.PORT_NAME)
    if len(argv) == 2 and argv[0] == "--port":
        return VirtioPort(path=argv[1])
    if len(argv) == 2 and argv[0] == "--name":
        return VirtioPort(name=argv[1])
    raise SystemExit(USAGE)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python3 -m septa.agent`` and of the guest's launcher."""
    port = parse_args(sys.argv[1:] if argv is None else argv)
    system.log(f"septa-agent starting on {port.device()}")
    if os.geteuid() == 0:
        system.adopt_qube_name()
    Agent(port, on_ready=system.normal_priority, preload=True, call_socket=CALL_SOCKET).run()
    return 0
