"""The agent protocol on the virtio-serial port ``org.septa.agent.0``: frames and their decoder.

Pure Python with no dependencies, importable on the host (the engine speaks the host
side) and in the guest (Python 3.11, standard library only).

A frame is ``type:u8 | channel:u32 | length:u32 | payload`` in network byte order, so the
header is 9 bytes and the payload at most :data:`MAX_PAYLOAD` bytes. Channel 0 is the
control channel (HELLO, READY, PING/PONG, SHUTDOWN_REQUEST).

Calls (the base of qrexec) use channels 1 and up, one call per channel, many at once:

- The host picks a free channel and sends OPEN with a JSON request (see
  :mod:`septa.agent.request`). A request the agent refuses gets one ERROR on that channel
  and the channel is free again; no other frame follows.
- Three byte streams travel on the channel: the process's stdin (host -> agent, DATA),
  its stdout (agent -> host, DATA) and its stderr (agent -> host, DATA_ERR). The end of a
  stream is EOF (stdin, stdout) or EOF_ERR (stderr). The agent closes the process's stdin
  at EOF (after writing what it received).
- Flow control, per stream and per direction: at OPEN each receiver has implicitly granted
  the sender :data:`INITIAL_WINDOW` bytes (the agent for stdin; the host for stdout and for
  stderr). A sender never sends more DATA / DATA_ERR bytes than it has been granted; the
  receiver grants more with WINDOW (stdin, stdout) or WINDOW_ERR (stderr), payload u32,
  as its consumer takes the bytes, so neither side buffers more than its grants.
- The call ends when the process has exited and both stdout and stderr have reached EOF
  (both EOF frames sent): the agent sends EXIT {"status": n} (n = 128 + signal number when
  a signal killed the process) and forgets the channel; the host forgets it on EXIT.
  A service that does not exist ends with a one-line message on stderr and status 127.
- CLOSE (host -> agent) aborts a call: the agent kills the process (its session), stops
  reading its output and still answers EXIT once it has reaped it. When the host breaks
  the protocol on a running call (e.g. sends more stdin than granted), the agent answers
  ERROR and aborts the call the same way; the host gives up the call at that ERROR.
  Frames on channels that are not open are ignored.
- Stdin the process does not read any more (it closed its stdin) is discarded, and still
  granted, so the host's writer never blocks on a process that stopped reading.
- When the host disconnects, the agent kills every running call.

Calls the other way (a process in the qube calls a service elsewhere, through
``qrexec-client-vm``; dom0 relays them under the policy) use channels with
:data:`AGENT_CHANNEL_BIT` set, which the agent picks, so the two spaces never collide:

- The agent sends CALL with JSON {"target", "service", "arg"} on a free channel of its
  space. The host answers ERROR (JSON {"message", "refused": true} when the policy or
  the target refused the call) and forgets the channel, or relays the call.
- Then the same frames flow as for a host-opened call, with the roles swapped: the
  agent sends the stdin of the remote process (DATA, EOF) and grants its stdout and
  stderr (WINDOW, WINDOW_ERR); the host sends the remote's stdout (DATA, EOF), stderr
  (DATA_ERR, EOF_ERR), grants stdin (WINDOW) and ends the call with EXIT or ERROR,
  after which both sides forget the channel. The same initial windows apply.
- CLOSE (agent -> host) aborts such a call (its caller went away); the host answers
  ERROR, or EXIT if the call had just ended.

The guest imports this module while the qube boots, where Python runs ~15x slower than
on the host (TCG) and every imported module counts: it needs only ``struct`` at import
time, encodes its JSON payloads itself and imports :mod:`json` only to decode one.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Version of the protocol; HELLO carries it, a peer with another major version is refused.
PROTOCOL_VERSION = 1

#: Name of the virtio-serial port (``/dev/virtio-ports/<name>`` in the guest).
PORT_NAME = "org.septa.agent.0"

#: Largest payload of one frame (64 KiB, the size of qrexec's data chunks).
MAX_PAYLOAD = 65536

#: Bytes of each call stream a receiver grants its sender at OPEN, without a WINDOW frame.
INITIAL_WINDOW = 256 * 1024

#: The control channel; calls use channels 1..MAX_CHANNEL.
CONTROL_CHANNEL = 0
MAX_CHANNEL = 0xFFFFFFFF
#: Set in the channels of calls the agent starts (CALL); the host's OPEN never uses them.
AGENT_CHANNEL_BIT = 0x80000000

_HEADER = struct.Struct("!BII")
HEADER_SIZE = _HEADER.size


class FrameType:
    """Frame types (plain ints). Values are part of the protocol: never renumber, only add."""

    #: agent -> host when it (re)connects: JSON {"version", "hostname"};
    #: host -> agent: asks the agent to introduce itself again.
    HELLO = 1
    #: agent -> host: the qube has finished booting (basic.target reached, private volume
    #: mounted) and can run things. JSON {"uptime": seconds}. HELLO comes earlier.
    READY = 2
    #: either way; the peer answers PONG with the same channel and payload.
    PING = 3
    PONG = 4
    #: host -> agent: power the qube off cleanly.
    SHUTDOWN_REQUEST = 5
    #: either way: JSON {"message": ...} about a frame that could not be served.
    ERROR = 6
    #: host -> agent: start a call on a new channel (JSON request).
    OPEN = 16
    #: host -> agent: bytes for the call's stdin; agent -> host: bytes of its stdout.
    DATA = 17
    #: host -> agent: the end of stdin; agent -> host: the end of stdout.
    EOF = 18
    #: agent -> host: the call ended; JSON {"status": int}. The last frame of a call.
    EXIT = 19
    #: either way: payload u32, how many more DATA bytes the sender of WINDOW accepts
    #: (host -> agent: of stdout; agent -> host: of stdin).
    WINDOW = 20
    #: host -> agent: abort the call (kill the process); the agent still answers EXIT.
    CLOSE = 21
    #: agent -> host: bytes of the call's stderr.
    DATA_ERR = 22
    #: agent -> host: the end of stderr.
    EOF_ERR = 23
    #: host -> agent: payload u32, how many more DATA_ERR bytes the host accepts
    #: (agent -> host on a channel of a CALL: how many the agent accepts).
    WINDOW_ERR = 24
    #: agent -> host: call a service elsewhere, under dom0's policy, on a channel with
    #: AGENT_CHANNEL_BIT set; JSON {"target", "service", "arg"}.
    CALL = 25


TYPE_NAMES = {
    value: name for name, value in vars(FrameType).items() if name.isupper()
}


def type_name(frame_type: int) -> str:
    """The name of a frame type, or ``UNKNOWN(<n>)``."""
    return TYPE_NAMES.get(frame_type, f"UNKNOWN({frame_type})")


class FrameError(ValueError):
    """A frame that cannot be encoded, or a byte stream that is not a frame stream."""


class Frame:
    """One protocol frame. ``type`` is an int, so that unknown types pass through."""

    __slots__ = ("type", "channel", "payload")

    def __init__(self, type: int, channel: int = CONTROL_CHANNEL, payload: bytes = b"") -> None:
        self.type = type
        self.channel = channel
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (self.type, self.channel, self.payload) == (other.type, other.channel, other.payload)

    def __hash__(self) -> int:
        return hash((self.type, self.channel, self.payload))

    def __repr__(self) -> str:
        return f"Frame({self.name}, channel={self.channel}, payload={self.payload!r})"

    @property
    def name(self) -> str:
        """The type's name, or ``UNKNOWN(<n>)``."""
        return type_name(self.type)

    def encode(self) -> bytes:
        """The frame's bytes on the wire."""
        return encode(self.type, self.channel, self.payload)

    def json(self) -> Any:
        """The payload parsed as JSON (HELLO, READY, ERROR, OPEN, EXIT)."""
        import json

        try:
            return json.loads(self.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise FrameError(f"frame {self.name} has no valid JSON payload: {exc}") from exc


def encode(frame_type: int, channel: int = CONTROL_CHANNEL, payload: bytes = b"") -> bytes:
    """Encode one frame; raises :class:`FrameError` for out-of-range fields."""
    if not 0 <= frame_type <= 0xFF:
        raise FrameError(f"frame type {frame_type} out of range")
    if not 0 <= channel <= MAX_CHANNEL:
        raise FrameError(f"channel {channel} out of range")
    if len(payload) > MAX_PAYLOAD:
        raise FrameError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return _HEADER.pack(frame_type, channel, len(payload)) + bytes(payload)


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t",
            "\b": "\\b", "\f": "\\f"}


def _json_string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def dumps(obj: object) -> str:
    """Compact JSON of ``obj`` (dict keys sorted), like ``json.dumps`` but without importing it.

    Supports dict (str keys), list, tuple, str, int, finite float, bool and None.
    """
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, str):
        return _json_string(obj)
    if isinstance(obj, int):
        return str(int(obj))
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise FrameError(f"{obj!r} has no JSON form")
        return repr(obj)
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps(item) for item in obj) + "]"
    if isinstance(obj, dict):
        items = []
        for key in sorted(obj):
            if not isinstance(key, str):
                raise FrameError(f"JSON object keys must be strings, not {key!r}")
            items.append(_json_string(key) + ":" + dumps(obj[key]))
        return "{" + ",".join(items) + "}"
    raise FrameError(f"{type(obj).__name__} has no JSON form")


def json_frame(frame_type: int, obj: object, channel: int = CONTROL_CHANNEL) -> Frame:
    """A frame whose payload is ``obj`` as compact UTF-8 JSON."""
    try:
        payload = dumps(obj).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FrameError(f"not encodable as UTF-8: {exc}") from exc
    return Frame(frame_type, channel, payload)


def hello(hostname: str) -> Frame:
    """The agent's HELLO frame."""
    return json_frame(FrameType.HELLO, {"version": PROTOCOL_VERSION, "hostname": hostname})


def window(channel: int, grant: int, frame_type: int = FrameType.WINDOW) -> Frame:
    """A WINDOW (or WINDOW_ERR) frame granting ``grant`` more bytes on ``channel``."""
    return Frame(frame_type, channel, struct.pack("!I", grant))


def window_grant(frame: Frame) -> int:
    """The number of bytes a WINDOW or WINDOW_ERR frame grants."""
    if len(frame.payload) != 4:
        raise FrameError(f"frame {frame.name} needs a 4-byte payload, not {len(frame.payload)}")
    grant: int = struct.unpack("!I", frame.payload)[0]
    return grant


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, get whole frames back.

    A header announcing more than ``max_payload`` bytes raises :class:`FrameError` as
    soon as the header is complete (the payload is never buffered). After an error the
    stream cannot be resynchronised: the decoder refuses further input until
    :meth:`reset` (a new connection).
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._failed: FrameError | None = None

    @property
    def pending(self) -> int:
        """Bytes received that are not part of a returned frame yet."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget buffered bytes and any earlier error (the peer reconnected)."""
        self._buf.clear()
        self._failed = None

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames they complete, in order."""
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        offset = 0
        while len(buf) - offset >= HEADER_SIZE:
            frame_type, channel, length = _HEADER.unpack_from(buf, offset)
            if length > self.max_payload:
                self._failed = FrameError(
                    f"frame {type_name(frame_type)} announces {length} bytes, "
                    f"more than the maximum {self.max_payload}"
                )
                buf.clear()
                raise self._failed
            end = offset + HEADER_SIZE + length
            if len(buf) < end:
                break
            frames.append(Frame(frame_type, channel, bytes(buf[offset + HEADER_SIZE : end])))
            offset = end
        if offset:
            del buf[:offset]
        return frames
