"""The reference for qrexec throughput: a plain byte stream over a virtio-serial port.

A bare QEMU (:class:`boot.BareQemu`: the template build's kernel, initrd and root image,
the qube's memory, vcpus and accelerator) gets a second virtio-serial port,
``org.septa.raw.0``, on the same controller and with the same kind of host end (a unix
socket chardev) as the agent's port. Once its agent is READY, the guest runs ``head -c``
into the port (guest -> host) and ``head -c ... | wc -c`` out of it (host -> guest), each
started through the agent (the host end of :mod:`septa.qrexec.mux`); the data itself
passes through the raw port only, with no framing, windows or relay: what qrexec's
pipes are compared with.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import _harness as h
import boot
from septa.hypervisor.agent_link import AgentLink
from septa.qrexec.mux import CallMux

RAW_PORT = "org.septa.raw.0"
GUEST_DEVICE = f"/dev/virtio-ports/{RAW_PORT}"
CHUNK = 65536


class RawPortQemu(boot.BareQemu):
    """The bare reference with the raw port next to the agent's."""

    def command(self, overlay: Path, agent: Path, console: Path) -> list[str]:
        return [*super().command(overlay, agent, console),
                "-chardev", f"socket,id=raw,path={agent.parent / 'raw.sock'},server=on,wait=off",
                "-device", f"virtserialport,bus=vser0.0,nr=2,chardev=raw,name={RAW_PORT}"]


@dataclass
class RawRates:
    """Seconds per run, each direction."""

    to_guest: list[float]
    from_guest: list[float]


def measure(image: boot.GuestImage, workdir: Path, memory_mib: int, vcpus: int, accel: str,
            size: int, runs: int) -> RawRates:
    """Boot the reference, time ``runs`` transfers of ``size`` bytes each way, stop it."""
    bare = RawPortQemu(image, workdir, memory_mib, vcpus, accel)
    try:
        bare.boot()
        run_dir = workdir / f"bare-{bare.runs}"
        return asyncio.run(_transfers(run_dir / "agent.sock", run_dir / "raw.sock", size,
                                      runs))
    finally:
        bare.stop_all()


async def _transfers(agent: Path, raw: Path, size: int, runs: int) -> RawRates:
    link = AgentLink("raw-reference", agent)
    await link.connect(30)
    link.request_hello()
    await link.wait_ready(60)
    mux = CallMux(link)
    reader, writer = await asyncio.open_unix_connection(str(raw))
    try:
        rates = RawRates([], [])
        for _ in range(runs):
            rates.from_guest.append(await _from_guest(mux, reader, size))
            rates.to_guest.append(await _to_guest(mux, writer, size))
        return rates
    finally:
        writer.close()
        await mux.close()
        await link.close()


def _command(text: str) -> dict[str, str]:
    return {"command": text, "user": "root"}


async def _from_guest(mux: CallMux, reader: asyncio.StreamReader, size: int) -> float:
    start = time.perf_counter()
    call = asyncio.ensure_future(mux.run(_command(f"head -c {size} /dev/zero > {GUEST_DEVICE}")))
    got = 0
    while got < size:
        data = await reader.read(CHUNK)
        if not data:
            raise h.BenchError(f"the raw port closed after {got} of {size} bytes")
        got += len(data)
    elapsed = time.perf_counter() - start
    status, _, err = await call
    if status != 0:
        raise h.BenchError(f"guest -> host over the raw port: status {status}: {err!r}")
    return elapsed


async def _to_guest(mux: CallMux, writer: asyncio.StreamWriter, size: int) -> float:
    call = asyncio.ensure_future(mux.run(_command(f"head -c {size} {GUEST_DEVICE} | wc -c")))
    block = bytes(CHUNK)
    start = time.perf_counter()
    left = size
    while left:
        take = min(left, CHUNK)
        writer.write(block[:take])
        await writer.drain()
        left -= take
    status, out, err = await call
    elapsed = time.perf_counter() - start
    if status != 0 or out.strip() != str(size).encode():
        raise h.BenchError(f"host -> guest over the raw port: wc -c said {out!r} "
                           f"(status {status}, {err!r})")
    return elapsed
