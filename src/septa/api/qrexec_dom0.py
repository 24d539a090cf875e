"""Services dom0 runs for qubes: the executable files of dom0's ``/etc/qubes-rpc``.

A call the policy allows towards dom0 runs ``<rpc_dir>/<service>+<arg>`` or else
``<rpc_dir>/<service>`` (as in a qube, :func:`septa.agent.request.find_service`), with
the argument as its only command line argument, as septad's user, with the qrexec
variables a service expects: ``QREXEC_REMOTE_DOMAIN`` (the calling qube),
``QREXEC_REQUESTED_TARGET``, ``QREXEC_SERVICE_FULL_NAME`` and ``QREXEC_SERVICE_ARGUMENT``.
A service that does not exist ends the call with a message on stderr and status 127.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from septa.agent import wire
from septa.agent.request import STATUS_NOT_FOUND, find_service
from septa.qrexec.incoming import IncomingCall, OutputSink
from septa.qrexec.mux import gather_or_cancel


async def run_dom0_service(call: IncomingCall, rpc_dir: Path, requested_target: str) -> int:
    """Run the service of ``call`` in dom0, relaying its streams; its exit status."""
    info = call.info
    full_name = f"{info.service}+{info.arg}" if info.arg else info.service
    path, _ = find_service(info.service, info.arg, [str(rpc_dir)])
    if path is None:
        return await _fail(call, f"dom0: no service {full_name} in {rpc_dir}\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("QREXEC_")}
    env.update(QREXEC_REMOTE_DOMAIN=call.source, QREXEC_REQUESTED_TARGET=requested_target,
               QREXEC_SERVICE_FULL_NAME=full_name)
    if info.arg:
        env["QREXEC_SERVICE_ARGUMENT"] = info.arg
    proc = await asyncio.create_subprocess_exec(
        path, *([info.arg] if info.arg else []), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin = proc.stdin

    async def feed() -> None:
        try:
            while data := await call.stdin.read(wire.MAX_PAYLOAD):
                stdin.write(data)
                await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the service does not read any more
        finally:
            stdin.close()

    async def forward(reader: asyncio.StreamReader, sink: OutputSink) -> None:
        while data := await reader.read(wire.MAX_PAYLOAD):
            sink.write(data)
            await sink.drain()
        sink.write_eof()

    feeder = asyncio.ensure_future(feed())
    try:
        await gather_or_cancel(forward(proc.stdout, call.stdout),
                               forward(proc.stderr, call.stderr))
        status = await proc.wait()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
    return 128 - status if status < 0 else status


async def _fail(call: IncomingCall, message: str) -> int:
    call.stderr.write(message.encode())
    await call.stderr.drain()
    call.stdout.write_eof()
    call.stderr.write_eof()
    return STATUS_NOT_FOUND
