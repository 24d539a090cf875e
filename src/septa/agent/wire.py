"""The agent protocol on the virtio-serial port ``org.septa.agent.0``: frames and their decoder.

Pure Python with no dependencies, importable on the host (the engine speaks the host
side) and in the guest (Python 3.11, standard library only).

A frame is ``type:u8 | channel:u32 | length:u32 | payload`` in network byte order, so the
header is 9 bytes and the payload at most :data:`MAX_PAYLOAD` bytes. Channel 0 is the
control channel (HELLO, READY, PING/PONG, SHUTDOWN_REQUEST). Channels 1 and up carry the
later multiplexed calls: the host opens one with OPEN, both sides send DATA, signal the
end of their input with EOF, the agent reports the exit status with EXIT, and WINDOW
grants the peer more bytes of DATA (flow control, as qrexec does with its windows).

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

#: The control channel; calls use channels 1..MAX_CHANNEL.
CONTROL_CHANNEL = 0
MAX_CHANNEL = 0xFFFFFFFF

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
    #: either way: bytes of a call's stdin / stdout.
    DATA = 17
    #: either way: no more DATA from this side on this channel.
    EOF = 18
    #: agent -> host: the call ended; JSON {"status": int}.
    EXIT = 19
    #: either way: payload u32, how many more DATA bytes the sender of WINDOW accepts.
    WINDOW = 20
    #: either way: forget the channel.
    CLOSE = 21


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


def window(channel: int, grant: int) -> Frame:
    """A WINDOW frame granting ``grant`` more bytes on ``channel``."""
    return Frame(FrameType.WINDOW, channel, struct.pack("!I", grant))


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
