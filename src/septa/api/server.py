"""The asyncio servers on the Admin API sockets: read a call, run it, answer, close.

Every failure becomes an exception frame: a malformed or oversized request, an unknown
method, a bad argument, or a bug in a handler. The daemon never stops serving because
of what a client sent. Calls that change the registry are saved before ``OK`` is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from septa.api.dispatch import MethodTable, prepare
from septa.api.protocol import (
    MAX_REQUEST,
    Request,
    exception_frame,
    ok_frame,
    parse_request,
)
from septa.core.app import Qubes
from septa.core.errors import ProtocolError, QubesException
from septa.core.vm import BaseVM

log = logging.getLogger(__name__)
READ_TIMEOUT = 30.0


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """The request bytes up to EOF; ProtocolError as soon as it passes the size limit."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_REQUEST:
            raise ProtocolError(f"Request too large (over {MAX_REQUEST} bytes)")
        chunks.append(chunk)


async def listen_unix(path: Path, handler: Callable[..., Any], mode: int,
                      **options: Any) -> asyncio.AbstractServer:
    """Serve ``handler`` on the unix socket ``path`` (a stale socket replaced), created
    with permissions ``mode`` from the start (the umask keeps the others out meanwhile)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old_umask = os.umask(0o777 & ~mode)
    try:
        server = await asyncio.start_unix_server(handler, path=str(path), **options)
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    return server


class ApiServer:
    """Serves one method table on one unix socket."""

    def __init__(self, app: Qubes, table: MethodTable, save: Callable[[Qubes], None]) -> None:
        self.app = app
        self.table = table
        self.save = save
        self.server: asyncio.AbstractServer | None = None

    async def start(self, path: Path) -> None:
        self.server = await listen_unix(path, self.handle, 0o660)
        with contextlib.suppress(KeyError, PermissionError):
            os.chown(path, -1, grp.getgrnam("qubes").gr_gid)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def respond(self, data: bytes) -> bytes | AsyncIterator[bytes]:
        """The response to one whole request (an event stream for ``admin.Events``)."""
        try:
            request = parse_request(data)
        except QubesException as exc:
            return exception_frame(exc.wire_name, str(exc))
        return await self.respond_to(request)

    async def respond_to(self, request: Request, permits: Callable[[BaseVM], bool] | None = None,
                         ) -> bytes | AsyncIterator[bytes]:
        """The response to a parsed request; ``permits`` as in :class:`Call`."""
        try:
            spec, call = prepare(self.app, request, self.table, permits)
            result = await spec.handler(call)
            if spec.writes:
                self.save(self.app)
        except QubesException as exc:
            log.debug("call refused: %s: %s", exc.wire_name, exc)
            return exception_frame(exc.wire_name, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the daemon
            log.exception("internal error while serving a call")
            return exception_frame("QubesException", f"Internal error in septad: {exc!r}")
        if result is None or isinstance(result, str | bytes):
            return ok_frame(result or b"")
        return result

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    data = await _read_request(reader)
            except ProtocolError as exc:
                writer.write(exception_frame(exc.wire_name, str(exc)))
                return
            except TimeoutError:
                writer.write(exception_frame("ProtocolError", "Request not finished in time"))
                return
            response = await self.respond(data)
            if isinstance(response, bytes):
                writer.write(response)
                return
            async for frame in response:
                writer.write(frame)
                await writer.drain()
        except (ConnectionError, OSError):
            log.debug("client went away")
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
                writer.close()
                await writer.wait_closed()


def socket_in_use(path: Path) -> bool:
    """True when a live daemon already answers on ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        return False
    finally:
        sock.close()
    return True
