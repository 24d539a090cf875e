"""The host side of calls (:class:`septa.qrexec.mux.CallMux`) against the real agent.

The "guest" is the agent's real code serving a unix socket in a thread, with a temp dir of
services and the current user; the host side is the real :class:`AgentLink` and
:class:`CallMux`. The flow-control tests assert on the bytes buffered, never on time.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from septa.agent import wire
from septa.agent.main import Agent
from septa.agent.port import SocketPort
from septa.hypervisor.agent_link import AgentLink
from septa.qrexec.mux import (
    CallAborted,
    CallMux,
    CallRefused,
    LinkClosed,
    RemoteCall,
    gather_or_cancel,
    pump,
)
from tests.unit.test_agent_calls import alive, call_config, make_rpc_dir

TIMEOUT = 60.0
MIB = 1 << 20
BIG = 200 * MIB
#: What the kernel holds in one pipe (the process's stdin or stdout) by default.
PIPE_BUFFER = 64 * 1024


class Guest:
    """The agent serving one connection on a unix socket, in a thread."""

    def __init__(self, tmp_path: Path, services: dict[str, str] | None = None) -> None:
        self.rpc = make_rpc_dir(tmp_path / "qubes-rpc", services)
        self.path = tmp_path / "agent.sock"
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.path))
        self.server.listen(1)
        self.conn: socket.socket | None = None
        self.agent: Agent | None = None
        self.log: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.conn, _ = self.server.accept()
        self.agent = Agent(
            SocketPort(self.conn), hostname=lambda: "guest", uptime=lambda: 1.0,
            poweroff=lambda: None, log=self.log.append, boot_complete=lambda: True,
            call_config=call_config(self.rpc),
        )
        self.agent.run(connections=1)

    @property
    def stdin_high_water(self) -> int:
        assert self.agent is not None and self.agent.calls is not None
        return self.agent.calls.stdin_high_water

    def drop(self) -> None:
        """The qube goes away: its end of the link closes."""
        assert self.conn is not None
        self.conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.thread.join(TIMEOUT)
        self.server.close()


Scenario = Callable[[Guest, AgentLink, CallMux], Awaitable[None]]


def run_with_guest(tmp_path: Path, scenario: Scenario, window: int = wire.INITIAL_WINDOW,
                   services: dict[str, str] | None = None) -> Guest:
    guest = Guest(tmp_path, services)

    async def main() -> None:
        link = AgentLink("guest", guest.path)
        await link.connect(5.0)
        await link.wait_ready(5.0)
        mux = CallMux(link, window)
        try:
            await asyncio.wait_for(scenario(guest, link, mux), TIMEOUT)
        finally:
            await mux.close()
            await link.close()

    try:
        asyncio.run(main())
    finally:
        guest.close()
    return guest


def command(text: str, **extra: Any) -> dict[str, Any]:
    return {"command": text, "user": "user", **extra}


def service(name: str, arg: str = "") -> dict[str, Any]:
    return {"service": name, "arg": arg, "source": "dom0", "user": "user",
            "requested_target": "guest"}


async def zeros(total: int, counter: list[int] | None = None) -> AsyncIterator[bytes]:
    """``total`` zero bytes in chunks, counting what was taken."""
    chunk = bytes(wire.MAX_PAYLOAD)
    sent = 0
    while sent < total:
        piece = chunk[: total - sent]
        sent += len(piece)
        if counter is not None:
            counter[0] = sent
        yield piece


async def until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(int(TIMEOUT * 100)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# --- calls ------------------------------------------------------------------------------------


def test_run_separates_stdout_stderr_and_status(tmp_path: Path) -> None:
    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        assert await mux.run(service("test.Split")) == (5, b"to-stdout\n", b"to-stderr\n")
        status, out, err = await mux.run(service("test.Env", "an.arg"))
        assert status == 0 and b"QREXEC_SERVICE_FULL_NAME=test.Env+an.arg\n" in out
        assert await mux.run(command("cat; exit 2"), b"in") == (2, b"in", b"")

    run_with_guest(tmp_path, scenario)


def test_stdin_from_an_async_iterator_and_eof(tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(100):
            yield b"%d," % i

    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        status, out, _ = await mux.run(command("tr , '\\n' | wc -l"), chunks())
        assert (status, out.strip()) == (0, b"100")
        call = await mux.open(service("test.Cat"))
        await call.write(b"one ")
        assert await call.read_stdout(100) == b"one "  # cat runs on
        await call.write(b"two")
        await call.close_stdin()  # now cat ends
        assert await call.read_stdout() == b"two"
        assert await call.read_stderr() == b""
        assert await call.wait() == 0
        with pytest.raises(BrokenPipeError):
            await call.write(b"late")

    run_with_guest(tmp_path, scenario)


def test_many_concurrent_calls_with_data_both_ways(tmp_path: Path) -> None:
    async def one(mux: CallMux, i: int) -> None:
        data = os.urandom(50_000 + i * 20_000)
        status, out, err = await mux.run(
            command(f"cat; echo err-{i} >&2; cat /dev/null >&2; exit {i % 5}"), data)
        assert (status, out, err) == (i % 5, data, b"err-%d\n" % i)

    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        await gather_or_cancel(*(one(mux, i) for i in range(30)))
        assert not mux.calls

    run_with_guest(tmp_path, scenario)


def test_missing_service_and_refused_requests(tmp_path: Path) -> None:
    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        status, out, err = await mux.run(service("no.Such"))
        assert status == 127 and out == b"" and err.count(b"\n") == 1
        for request in ({"service": "a/b", "user": "user"}, {"neither": 1},
                        {"command": "true", "user": "nobody-at-all"}):
            with pytest.raises(CallRefused, match="OPEN refused"):
                await mux.run(request)
        # not even JSON (CallMux never sends that, so it is sent by hand)
        call = RemoteCall(mux, 4242, mux.window)
        mux.calls[4242] = call
        link.send(wire.Frame(wire.FrameType.OPEN, 4242, b"{bad json"))
        with pytest.raises(CallRefused, match="not JSON"):
            await call.wait()
        with pytest.raises(CallRefused):
            await call.read_stdout()
        assert await link.ping() < 5.0  # the agent is fine
        assert (await mux.run(service("test.Which")))[1] == b"plain\n"

    run_with_guest(tmp_path, scenario)


def test_a_process_that_stops_reading_stdin_does_not_block_the_writer(tmp_path: Path) -> None:
    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        # closes its stdin at once, then works on: the rest of stdin is discarded
        status, out, _ = await mux.run(command("exec 0<&-; sleep 0.2; echo done"),
                                       zeros(20 * MIB))
        assert (status, out) == (0, b"done\n")
        # exits without reading: run() does not fail on the unwanted stdin
        assert await mux.run(command("exit 0"), zeros(20 * MIB)) == (0, b"", b"")

    run_with_guest(tmp_path, scenario)


def test_agent_serves_pings_while_calls_stream(tmp_path: Path) -> None:
    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        busy = [await mux.open(command("exec head -c 50000000 /dev/zero")) for _ in range(3)]
        idle = await mux.open(service("test.Cat"))
        for _ in range(5):
            assert await link.ping() < 5.0
        for call in busy:
            assert len(await call.read_stdout()) == 50_000_000
        await idle.close_stdin()
        assert [await c.wait() for c in [*busy, idle]] == [0, 0, 0, 0]

    run_with_guest(tmp_path, scenario)


# --- flow control ---------------------------------------------------------------------------


def test_a_slow_host_reader_keeps_memory_bounded(tmp_path: Path) -> None:
    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        call = await mux.open(command(f"exec head -c {BIG} /dev/zero"))
        await call.close_stdin()
        # Nobody reads: the agent sends the window, then the process blocks.
        await until(lambda: call.stdout.window == 0, "the window to fill")
        assert len(call.stdout.buffer) == wire.INITIAL_WINDOW
        await asyncio.sleep(0.3)
        assert len(call.stdout.buffer) == wire.INITIAL_WINDOW
        # A slow reader: small reads, with pauses.
        total = 0
        for i in range(2000):
            total += len(await call.read_stdout(4096))
            if i % 100 == 0:
                await asyncio.sleep(0.01)
            assert len(call.stdout.buffer) <= wire.INITIAL_WINDOW
        # Then the rest, as fast as it comes.
        while data := await call.read_stdout(wire.MAX_PAYLOAD):
            total += len(data)
            assert len(call.stdout.buffer) <= wire.INITIAL_WINDOW
        assert total == BIG
        assert call.stdout.high_water <= wire.INITIAL_WINDOW
        assert await call.wait() == 0

    run_with_guest(tmp_path, scenario)


def test_a_slow_stderr_reader_keeps_memory_bounded(tmp_path: Path) -> None:
    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        call = await mux.open(command("head -c 20000000 /dev/zero >&2; echo out"))
        await until(lambda: call.stderr.window == 0, "the stderr window to fill")
        await asyncio.sleep(0.2)
        assert len(call.stderr.buffer) == wire.INITIAL_WINDOW
        total = 0
        while data := await call.read_stderr(8192):
            total += len(data)
            await asyncio.sleep(0)
        assert total == 20_000_000
        assert await call.read_stdout() == b"out\n"
        assert call.stderr.high_water <= wire.INITIAL_WINDOW
        assert await call.wait() == 0

    run_with_guest(tmp_path, scenario)


def test_a_slow_guest_reader_keeps_memory_bounded(tmp_path: Path) -> None:
    flag = tmp_path / "go"

    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        # The process reads nothing until the flag exists, then counts what it gets.
        call = await mux.open(command(
            f"while [ ! -e {flag} ]; do sleep 0.01; done; exec wc -c"))
        written = [0]

        async def feed() -> None:
            async for chunk in zeros(BIG, written):
                await call.write(chunk)
            await call.close_stdin()

        feeder = asyncio.ensure_future(feed())
        stalled_at = -1
        while written[0] != stalled_at or call._send_window:  # until the writer waits
            stalled_at = written[0]
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.3)
        assert written[0] == stalled_at  # the writer waits, it does not buffer
        # in flight: the window, what the process's pipe holds, and the chunk being written
        assert stalled_at <= wire.INITIAL_WINDOW + PIPE_BUFFER + wire.MAX_PAYLOAD
        assert guest.stdin_high_water <= wire.INITIAL_WINDOW
        flag.touch()
        out = await call.read_stdout()
        await feeder
        assert int(out) == BIG
        assert guest.stdin_high_water <= wire.INITIAL_WINDOW
        assert await call.wait() == 0

    run_with_guest(tmp_path, scenario)


def test_a_larger_host_window(tmp_path: Path) -> None:
    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        call = await mux.open(command("exec head -c 10000000 /dev/zero"))
        await until(lambda: call.stdout.window == 0, "the window to fill")
        assert len(call.stdout.buffer) == MIB
        assert len(await call.read_stdout()) == 10_000_000
        assert call.stdout.high_water <= MIB

    run_with_guest(tmp_path, scenario, window=MIB)


# --- failures ---------------------------------------------------------------------------------


def test_link_drop_fails_every_call(tmp_path: Path) -> None:
    pids: list[int] = []

    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        calls = [await mux.open(service("test.Pid")) for _ in range(3)]
        for call in calls:
            pids.append(int(await call.read_stdout(100)))
        writer = await mux.open(service("test.Pid"))  # reads no stdin: the write blocks
        blocked = asyncio.ensure_future(writer.write(bytes(2 * wire.INITIAL_WINDOW)))
        await asyncio.sleep(0.1)
        guest.drop()
        for call in calls:
            with pytest.raises(LinkClosed):
                await call.wait()
            with pytest.raises(LinkClosed):
                await call.read_stdout()
        with pytest.raises(LinkClosed):
            await blocked
        with pytest.raises(LinkClosed):
            await mux.open(service("test.Which"))
        assert mux.closed and not mux.calls

    guest = run_with_guest(tmp_path, scenario)
    assert pids and not any(alive(pid) for pid in pids)  # the agent killed them
    assert "host disconnected" in guest.log


def test_abort_kills_the_process(tmp_path: Path) -> None:
    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        call = await mux.open(service("test.Pid"))
        pid = int(await call.read_stdout(100))
        call.abort()
        with pytest.raises(CallAborted):
            await call.wait()
        with pytest.raises(CallAborted):
            await call.write(b"x")
        await until(lambda: not mux._aborted, "the EXIT of the aborted call")
        assert not alive(pid)
        # a cancelled run() aborts its call too
        task = asyncio.ensure_future(mux.run(service("test.Pid")))
        await until(lambda: bool(mux.calls), "the call to open")
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: not mux._aborted and not mux.calls, "the EXIT of the run")

    run_with_guest(tmp_path, scenario)


# --- pumping into streams --------------------------------------------------------------------


class Sink:
    """A ByteSink that takes its time (its drain sleeps) and records EOF."""

    def __init__(self, delay: float = 0.0) -> None:
        self.data = bytearray()
        self.eof = False
        self.delay = delay
        self.calls = 0

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        self.calls += 1
        if self.delay and self.calls % 50 == 0:
            await asyncio.sleep(self.delay)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True


def test_pump_between_asyncio_streams(tmp_path: Path) -> None:
    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        source = asyncio.StreamReader()
        payload = os.urandom(3 * MIB)
        source.feed_data(payload)
        source.feed_eof()
        out, err = Sink(delay=0.01), Sink()
        call = await mux.open(command("cat; echo bye >&2; exit 6"))
        assert await pump(call, source, out, err) == 6
        assert bytes(out.data) == payload and out.eof
        assert bytes(err.data) == b"bye\n" and err.eof
        assert call.stdout.high_water <= wire.INITIAL_WINDOW

    run_with_guest(tmp_path, scenario)


def test_pump_relays_one_call_into_another(tmp_path: Path) -> None:
    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        client = await mux.open(command(
            "echo request; read reply; echo \"client got: $reply\" >&2"))
        server = await mux.open(command("read line; echo \"server saw $line\""))
        errors = Sink()
        status = await pump(client, server.stdout, server.stdin_sink(), errors)
        assert status == 0
        assert bytes(errors.data) == b"client got: server saw request\n"
        assert await server.wait() == 0

    run_with_guest(tmp_path, scenario)


def test_pump_with_a_stdin_that_never_ends(tmp_path: Path) -> None:
    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        source = asyncio.StreamReader()  # no EOF ever
        source.feed_data(b"ignored\n")
        out = Sink()
        call = await mux.open(command("echo early exit"))
        assert await pump(call, source, out) == 0
        assert bytes(out.data) == b"early exit\n"

    run_with_guest(tmp_path, scenario)


def test_a_bad_frame_from_the_agent_fails_only_its_call(tmp_path: Path) -> None:
    async def scenario(guest: Guest, link: AgentLink, mux: CallMux) -> None:
        call = await mux.open(service("test.Pid"))
        pid = int(await call.read_stdout(100))
        mux._on_frame(wire.Frame(wire.FrameType.EXIT, call.channel, b"not json"))
        with pytest.raises(CallRefused, match="bad EXIT"):
            await call.wait()
        await until(lambda: not alive(pid), "the agent to kill the process")
        assert (await mux.run(service("test.Which")))[1] == b"plain\n"

    run_with_guest(tmp_path, scenario)
