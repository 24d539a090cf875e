"""septad's qrexec socket: calls from dom0 into qubes (``qrexec-client``, ``qvm-run``).

One connection is one call, in the frames of :mod:`septa.agent.wire`: the client sends
OPEN (JSON: target, user, service + arg or command, autostart), then its stdin as DATA
and EOF; septad answers with the call's stdout (DATA), stderr (DATA_ERR), EXIT (JSON
status) or ERROR (JSON message). The target is started first when it is halted and
autostart is asked. dom0 is trusted, so these calls do not go through the policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from septa.agent.wire import Frame, FrameDecoder, FrameError, FrameType
from septa.api.server import listen_unix
from septa.core.app import Qubes
from septa.core.errors import QubesException, QubesValueError, QubesVMNotStartedError
from septa.qrexec.mux import QrexecError, RemoteCall
from septa.qrexec.policy.names import argument_problem, service_problem

log = logging.getLogger(__name__)
CHANNEL = 1
CHUNK = 65536
_USER = r"[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,31}"


def _json(frame_type: int, obj: Any) -> bytes:
    return Frame(frame_type, CHANNEL, json.dumps(obj).encode()).encode()


def agent_request(open_request: dict[str, Any]) -> tuple[str, bool, dict[str, Any]]:
    """(target, autostart, the agent's OPEN request) from a client's OPEN request."""
    target = open_request.get("target")
    if not isinstance(target, str) or not target:
        raise QubesValueError("The call names no target qube")
    user = open_request.get("user") or "user"
    if not isinstance(user, str) or not re.fullmatch(_USER, user):
        raise QubesValueError(f"Invalid user name: {user!r}")
    autostart = bool(open_request.get("autostart", True))
    if "command" in open_request:
        command = open_request["command"]
        if not isinstance(command, str) or "\0" in command:
            raise QubesValueError("Invalid command")
        return target, autostart, {"command": command, "user": user}
    service = open_request.get("service")
    arg = open_request.get("arg", "")
    if not isinstance(service, str) or not isinstance(arg, str):
        raise QubesValueError("The call names no service")
    problem = service_problem(service) or argument_problem(arg)
    if problem:
        raise QubesValueError(problem)
    return target, autostart, {"service": service, "arg": arg, "source": "dom0",
                               "user": user, "requested_target": target}


class QrexecServer:
    """Serves calls from dom0 into qubes."""

    def __init__(self, app: Qubes) -> None:
        self.app = app
        self.server: asyncio.AbstractServer | None = None

    async def start(self, path: Path) -> None:
        self.server = await listen_unix(path, self.handle, 0o600)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _first_frame(self, reader: asyncio.StreamReader,
                           decoder: FrameDecoder) -> tuple[Frame, list[Frame]]:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                raise QubesValueError("The client sent no request")
            frames = decoder.feed(data)
            if frames:
                return frames[0], frames[1:]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        call: RemoteCall | None = None
        try:
            first, pending = await asyncio.wait_for(self._first_frame(reader, decoder), 30)
            if first.type != FrameType.OPEN:
                raise QubesValueError("The first frame must be OPEN")
            opened = first.json()
            if not isinstance(opened, dict):
                raise QubesValueError("The OPEN request must be a JSON object")
            target, autostart, request = agent_request(opened)
            vm = self.app.domains[target]
            runtime = self.app.runtime
            if runtime is None:
                raise QubesVMNotStartedError("This septad runs no qubes")
            mux = await runtime.running_mux(vm, autostart)
            call = await mux.open(request)
            await self._pump(call, reader, writer, decoder, pending)
        except (QubesException, QrexecError, FrameError, TimeoutError, ValueError) as exc:
            name = type(exc).__name__
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(_json(FrameType.ERROR, {"exception": name, "message": str(exc)}))
        except (ConnectionError, OSError):
            pass
        finally:
            if call is not None and not call.done:
                call.abort()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
                writer.close()
                await writer.wait_closed()

    async def _pump(self, call: RemoteCall, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, decoder: FrameDecoder,
                    pending: list[Frame]) -> None:
        async def client_to_call() -> None:
            frames = pending
            while True:
                for frame in frames:
                    if frame.type == FrameType.DATA:
                        await call.write(frame.payload)
                    elif frame.type == FrameType.EOF:
                        await call.close_stdin()
                        return
                data = await reader.read(CHUNK)
                if not data:
                    await call.close_stdin()
                    return
                frames = decoder.feed(data)

        async def call_to_client(read: Any, data_type: int, eof_type: int) -> None:
            while True:
                chunk = await read(CHUNK)
                if not chunk:
                    writer.write(Frame(eof_type, CHANNEL).encode())
                    return
                writer.write(Frame(data_type, CHANNEL, chunk).encode())
                await writer.drain()

        feeder = asyncio.ensure_future(client_to_call())
        try:
            await asyncio.gather(
                call_to_client(call.read_stdout, FrameType.DATA, FrameType.EOF),
                call_to_client(call.read_stderr, FrameType.DATA_ERR, FrameType.EOF_ERR))
            status = await call.wait()
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError, QrexecError, BrokenPipeError):
                await feeder
        writer.write(_json(FrameType.EXIT, {"status": status}))
