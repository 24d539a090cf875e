"""The agent protocol (frames, decoder, JSON payloads) and the agent's behaviour on a fake port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from septa.agent import main as agent_main
from septa.agent import port as agent_port
from septa.agent import wire
from septa.agent.wire import Frame, FrameDecoder, FrameError, FrameType

# --- frames -------------------------------------------------------------------------------


def test_header_layout_is_type_channel_length_big_endian() -> None:
    data = wire.encode(FrameType.PING, 0x01020304, b"abc")
    assert data == b"\x03" + b"\x01\x02\x03\x04" + b"\x00\x00\x00\x03" + b"abc"
    assert wire.HEADER_SIZE == 9


def test_frame_types_are_distinct_bytes() -> None:
    values = list(wire.TYPE_NAMES)
    assert len(values) == len(set(values))
    assert all(0 < v <= 0xFF for v in values)
    for name in ("HELLO", "READY", "SHUTDOWN_REQUEST", "PING", "PONG", "DATA", "EOF", "EXIT",
                 "WINDOW", "OPEN", "CLOSE", "ERROR"):
        assert wire.type_name(getattr(FrameType, name)) == name
    assert wire.type_name(250) == "UNKNOWN(250)"


def test_encode_rejects_out_of_range_fields() -> None:
    with pytest.raises(FrameError):
        wire.encode(256)
    with pytest.raises(FrameError):
        wire.encode(-1)
    with pytest.raises(FrameError):
        wire.encode(FrameType.DATA, 1 << 32)
    with pytest.raises(FrameError):
        wire.encode(FrameType.DATA, 1, b"x" * (wire.MAX_PAYLOAD + 1))
    assert len(wire.encode(FrameType.DATA, 1, b"x" * wire.MAX_PAYLOAD)) == (
        wire.HEADER_SIZE + wire.MAX_PAYLOAD
    )


def test_round_trip_of_several_frames_in_one_chunk() -> None:
    frames = [
        Frame(FrameType.HELLO, 0, b'{"version":1}'),
        Frame(FrameType.DATA, 7, b"\x00" * 1000),
        Frame(FrameType.EOF, 7),
        Frame(200, 0xFFFFFFFF, b"unknown types pass through"),
    ]
    decoder = FrameDecoder()
    assert decoder.feed(b"".join(f.encode() for f in frames)) == frames
    assert decoder.pending == 0


def test_split_frames_byte_by_byte() -> None:
    frames = [Frame(FrameType.PING, 0, b"one"), Frame(FrameType.DATA, 3, b"two" * 50)]
    stream = b"".join(f.encode() for f in frames)
    decoder = FrameDecoder()
    out: list[Frame] = []
    for i in range(len(stream)):
        got = decoder.feed(stream[i : i + 1])
        out += got
        if i < len(stream) - 1:
            assert decoder.pending > 0 or got
    assert out == frames


@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=10),
)
def test_any_split_decodes_the_same(payloads: list[bytes], cuts: list[int]) -> None:
    frames = [Frame(FrameType.DATA, i + 1, p) for i, p in enumerate(payloads)]
    stream = b"".join(f.encode() for f in frames)
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    decoder = FrameDecoder()
    out: list[Frame] = []
    for a, b in zip(points, points[1:], strict=False):
        out += decoder.feed(stream[a:b])
    assert out == frames
    assert decoder.pending == 0


def test_oversize_frame_rejected_at_its_header() -> None:
    decoder = FrameDecoder(max_payload=100)
    header = bytes([FrameType.DATA]) + (1).to_bytes(4, "big") + (101).to_bytes(4, "big")
    assert decoder.feed(Frame(FrameType.PING).encode()) == [Frame(FrameType.PING)]
    with pytest.raises(FrameError, match="more than the maximum 100"):
        decoder.feed(header)  # no payload sent: rejected on the header alone
    with pytest.raises(FrameError):
        decoder.feed(Frame(FrameType.PING).encode())  # the stream is lost
    decoder.reset()
    assert decoder.feed(Frame(FrameType.PING).encode()) == [Frame(FrameType.PING)]


def test_default_maximum_payload() -> None:
    decoder = FrameDecoder()
    header = bytes([FrameType.DATA]) + (1).to_bytes(4, "big")
    with pytest.raises(FrameError):
        decoder.feed(header + (wire.MAX_PAYLOAD + 1).to_bytes(4, "big"))
    decoder.reset()
    ok = header + wire.MAX_PAYLOAD.to_bytes(4, "big") + b"y" * wire.MAX_PAYLOAD
    assert decoder.feed(ok)[0].payload == b"y" * wire.MAX_PAYLOAD


# --- JSON payloads ------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(_json_values)
def test_dumps_is_json(value: object) -> None:
    text = wire.dumps(value)
    assert json.loads(text) == value
    assert text == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_dumps_rejects_what_json_cannot_say() -> None:
    for bad in (float("nan"), float("inf"), {1: 2}, b"bytes", {"a": object()}):
        with pytest.raises(FrameError):
            wire.dumps(bad)
    with pytest.raises(FrameError):
        wire.json_frame(FrameType.ERROR, {"message": "\udcff"})


def test_hello_and_json_payload() -> None:
    frame = wire.hello("work")
    assert frame.type == FrameType.HELLO and frame.channel == 0
    assert frame.json() == {"version": wire.PROTOCOL_VERSION, "hostname": "work"}
    with pytest.raises(FrameError):
        Frame(FrameType.READY, 0, b"{not json").json()
    assert wire.window(5, 65536) == Frame(FrameType.WINDOW, 5, b"\x00\x01\x00\x00")


# --- the agent on a fake port ---------------------------------------------------------------


class FakePort(agent_port.Port):
    """Scripted host: each connection is a list of chunks the host sends; ``None`` in it
    stands for a read that times out."""

    def __init__(self, connections: list[list[bytes | None]]) -> None:
        self.connections = connections
        self.current: list[bytes | None] = []
        self.sent: list[list[Frame]] = []
        self.timeouts: list[float | None] = []
        self.decoder = FrameDecoder()

    def wait_connected(self) -> None:
        self.current = list(self.connections.pop(0))
        self.sent.append([])
        self.decoder.reset()

    def read(self, timeout: float | None = None) -> bytes | None:
        self.timeouts.append(timeout)
        chunk = self.current.pop(0) if self.current else b""
        if chunk is None and timeout is None:
            raise AssertionError("a blocking read cannot time out")
        return chunk

    def write(self, data: bytes) -> None:
        self.sent[-1] += self.decoder.feed(data)


def _agent(port: FakePort, events: list[str], booted: list[bool] | None = None) -> agent_main.Agent:
    state = booted if booted is not None else [True]
    return agent_main.Agent(
        port,
        hostname=lambda: "work",
        uptime=lambda: 4.5,
        poweroff=lambda: events.append("poweroff"),
        log=lambda message: events.append("log: " + message),
        boot_complete=lambda: state[0],
        on_ready=lambda: events.append("ready"),
    )


def _types(frames: list[Frame]) -> list[int]:
    return [f.type for f in frames]


def test_agent_introduces_itself_and_answers() -> None:
    ping = Frame(FrameType.PING, 0, b"42").encode()
    port = FakePort([[ping[:4], ping[4:] + Frame(FrameType.SHUTDOWN_REQUEST).encode()]])
    events: list[str] = []
    _agent(port, events).run(connections=1)
    sent = port.sent[0]
    assert _types(sent) == [FrameType.HELLO, FrameType.READY, FrameType.PONG]
    assert sent[0].json() == {"version": 1, "hostname": "work"}
    assert sent[1].json() == {"uptime": 4.5}
    assert sent[2].payload == b"42"
    assert "poweroff" in events and events.index("ready") < events.index("poweroff")
    assert port.timeouts == [None, None, None]  # booted: plain blocking reads


def test_ready_waits_for_the_end_of_the_boot() -> None:
    booted = [False]
    ping = Frame(FrameType.PING, 0, b"early").encode()
    port = FakePort([[None, ping, None, None, Frame(FrameType.PING).encode()]])
    events: list[str] = []
    agent = _agent(port, events, booted)
    real_read = port.read

    def read(timeout: float | None = None) -> bytes | None:
        if len(port.timeouts) == 3:
            booted[0] = True  # the boot completes during the fourth read
        return real_read(timeout)

    port.read = read  # type: ignore[method-assign]
    agent.run(connections=1)
    assert _types(port.sent[0]) == [
        FrameType.HELLO, FrameType.PONG, FrameType.READY, FrameType.PONG,
    ]
    assert port.timeouts[:3] == [agent_main.BOOT_POLL] * 3
    assert port.timeouts[4:] == [None, None]
    assert events.count("ready") == 1


def test_agent_reintroduces_itself_after_reconnect_and_on_hello() -> None:
    port = FakePort([[], [Frame(FrameType.HELLO).encode()]])
    events: list[str] = []
    _agent(port, events).run(connections=2)
    assert _types(port.sent[0]) == [FrameType.HELLO, FrameType.READY]
    assert _types(port.sent[1]) == [FrameType.HELLO, FrameType.READY] * 2


def test_agent_reports_unserved_frames_and_protocol_errors() -> None:
    oversize = bytes([FrameType.DATA]) + (1).to_bytes(4, "big") + (1 << 30).to_bytes(4, "big")
    port = FakePort([
        [Frame(FrameType.OPEN, 3, b"{}").encode(), oversize, b"garbage after the error"],
    ])
    events: list[str] = []
    _agent(port, events).run(connections=1)
    errors = [f for f in port.sent[0] if f.type == FrameType.ERROR]
    assert errors[0].channel == 3 and "OPEN" in errors[0].json()["message"]
    assert "protocol error" in errors[1].json()["message"]
    assert port.current == []  # drained until the host went away


def test_parse_args() -> None:
    assert agent_main.parse_args([]).name == wire.PORT_NAME
    assert agent_main.parse_args(["--port", "/dev/vport1p1"]).path == "/dev/vport1p1"
    assert agent_main.parse_args(["--name", "x.y"]).name == "x.y"
    with pytest.raises(SystemExit):
        agent_main.parse_args(["--bogus"])


# --- the virtio port ---------------------------------------------------------------------


def test_find_port_through_sysfs(tmp_path: Path) -> None:
    for entry, name in (("vport1p1", "org.other"), ("vport1p2", wire.PORT_NAME)):
        (tmp_path / entry).mkdir()
        (tmp_path / entry / "name").write_text(name + "\n")
    assert agent_port.find_port(wire.PORT_NAME, str(tmp_path)) == "/dev/vport1p2"
    assert agent_port.find_port("org.missing", str(tmp_path)) is None
    assert agent_port.find_port("x", str(tmp_path / "none")) is None


def test_waiting_for_the_host_sleeps_instead_of_spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    port = agent_port.VirtioPort(path="/nonexistent", poll_interval=0.2)
    states = iter([False, False, False, True])
    monkeypatch.setattr(port, "host_connected", lambda: next(states))
    sleeps: list[float] = []
    monkeypatch.setattr("septa.agent.port.time.sleep", sleeps.append)
    port.wait_connected()
    assert sleeps == [0.2, 0.2, 0.2]


def test_port_read_write_on_a_pipe_and_eof() -> None:
    r, w = os.pipe()
    reader = agent_port.VirtioPort(path="/unused")
    writer = agent_port.VirtioPort(path="/unused")
    reader._fd, writer._fd = r, w
    writer.write(b"hello" * 12000)
    assert reader.read(timeout=0.01) == b"hello" * 12000
    assert reader.read(timeout=0.01) is None
    writer.close()
    while reader.read():
        pass
    assert reader.read() == b""  # the writer is gone: EOF, as when the host disconnects
    reader.close()


# --- what the guest imports ------------------------------------------------------------------


def test_agent_imports_only_light_stdlib_modules(tmp_path: Path) -> None:
    """The agent starts during boot under TCG: heavy modules would delay READY by seconds."""
    src = Path(agent_main.__file__).resolve().parents[2]
    code = (
        f"import sys; sys.path.insert(0, {str(src)!r})\n"
        "import septa.agent.main\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], check=True,
                         capture_output=True, text=True).stdout.split()
    heavy = {"json", "logging", "dataclasses", "typing", "argparse", "enum", "subprocess",
             "socket", "re", "inspect", "runpy", "lxml", "rich"}
    assert heavy.isdisjoint(out), sorted(heavy & set(out))
    assert not [m for m in out if m.startswith("septa.") and not m.startswith("septa.agent")]


def test_the_agent_takes_the_qube_name_from_the_kernel_command_line(tmp_path: Path) -> None:
    from septa.agent import system

    cmdline, target = tmp_path / "cmdline", tmp_path / "hostname"
    cmdline.write_text("root=/dev/vda rw septa.qube=work-2 quiet\n")
    assert system.adopt_qube_name(str(cmdline), str(target)) == "work-2"
    assert target.read_text() == "work-2"
    cmdline.write_text("root=/dev/vda septa.qube=bad/name\n")
    target.unlink()
    assert system.adopt_qube_name(str(cmdline), str(target)) is None
    assert not target.exists()
