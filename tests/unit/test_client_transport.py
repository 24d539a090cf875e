"""The client's wire layer: request bytes, answer parsing, error mapping, event streams."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import septa.paths
from septa.client import errors
from septa.client.testing import Call, FakeAdminServer, error_frame, event_frame, ok_frame
from septa.client.transport import Transport, encode_request, parse_response


@pytest.fixture
def server() -> Iterator[FakeAdminServer]:
    with FakeAdminServer(septa.paths.current().admin_socket) as srv:
        yield srv


def test_request_bytes_follow_the_wire_format() -> None:
    assert encode_request("work", "admin.vm.property.Set", "netvm", b"sys-net") == (
        b"admin.vm.property.Set+netvm dom0 name work\x00sys-net"
    )
    assert (
        encode_request("dom0", "admin.vm.List", None, None) == b"admin.vm.List+ dom0 name dom0\x00"
    )


def test_call_sends_header_and_payload_and_returns_content(server: FakeAdminServer) -> None:
    server.expect("work", "admin.vm.notes.Set", payload=b"hello", ok=b"")
    server.expect("dom0", "admin.vm.List", ok="a class=AppVM state=Halted\n")
    transport = Transport()
    assert transport.call("work", "admin.vm.notes.Set", None, b"hello") == b""
    assert transport.call("dom0", "admin.vm.List") == b"a class=AppVM state=Halted\n"
    assert server.raw_requests == [
        b"admin.vm.notes.Set+ dom0 name work\x00hello",
        b"admin.vm.List+ dom0 name dom0\x00",
    ]
    assert server.calls[0] == Call("work", "admin.vm.notes.Set", None, b"hello")


def test_error_frame_raises_the_named_exception(server: FakeAdminServer) -> None:
    server.fail(
        "nope",
        "admin.vm.CurrentState",
        exc="QubesVMNotFoundError",
        message="No such domain: 'nope'",
    )
    with pytest.raises(errors.QubesVMNotFoundError) as info:
        Transport().call("nope", "admin.vm.CurrentState")
    assert str(info.value) == "No such domain: 'nope'"
    assert isinstance(info.value, KeyError)


def test_error_message_is_percent_formatted_with_its_arguments() -> None:
    frame = b"2\x00QubesValueError\x00\x00%s is %d%% full\x00pool\x0050\x00"
    with pytest.raises(errors.QubesValueError, match="^pool is 50% full$"):
        parse_response(frame)
    with pytest.raises(errors.QubesException, match="^100%$"):
        parse_response(error_frame("QubesException", "100%%"))


def test_unknown_exception_name_maps_to_the_base_class() -> None:
    with pytest.raises(errors.QubesException) as info:
        parse_response(error_frame("SomethingNewError", "boom"))
    assert type(info.value) is errors.QubesException
    assert str(info.value) == "boom"


def test_empty_and_garbled_answers_are_communication_errors() -> None:
    with pytest.raises(errors.QubesDaemonAccessError):
        parse_response(b"")
    with pytest.raises(errors.QubesDaemonCommunicationError, match="Invalid response"):
        parse_response(b"9\x00what")
    assert parse_response(ok_frame("x")) == b"x"


def test_missing_socket_says_septad_is_not_running(septa_root: Path) -> None:
    path = septa.paths.current().admin_socket
    with pytest.raises(errors.QubesDaemonCommunicationError) as info:
        Transport().call("dom0", "admin.vm.List")
    assert str(info.value) == f"septad is not running (no socket at {path})"


def test_socket_without_listener_says_septad_is_not_running(septa_root: Path) -> None:
    path = septa.paths.current().admin_socket
    path.parent.mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
    with pytest.raises(errors.QubesDaemonCommunicationError, match="septad is not running"):
        Transport().call("dom0", "admin.vm.List")


def test_events_are_parsed_across_arbitrary_chunk_boundaries(septa_root: Path) -> None:
    stream = (
        event_frame("", "connection-established")
        + event_frame("work", "domain-feature-set:x", feature="x", value="", oldvalue="1")
        + event_frame("", "domain-add", vm="new")
    )
    path = septa.paths.current().admin_socket
    path.parent.mkdir(parents=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            received.append(conn.recv(4096))
            for i in range(0, len(stream), 7):  # dribble the stream out in small pieces
                conn.sendall(stream[i : i + 7])

    thread = threading.Thread(target=serve)
    thread.start()
    events = list(Transport().events())
    thread.join()
    listener.close()
    assert received == [b"admin.Events+ dom0 name dom0\x00"]
    assert [(e.subject, e.name, e.kwargs) for e in events] == [
        ("", "connection-established", {}),
        ("work", "domain-feature-set:x", {"feature": "x", "value": "", "oldvalue": "1"}),
        ("", "domain-add", {"vm": "new"}),
    ]


def test_refused_event_stream_raises(server: FakeAdminServer) -> None:
    server.fail("dom0", "admin.Events", exc="PermissionDenied", message="not allowed")
    with pytest.raises(errors.PermissionDenied, match="not allowed"):
        list(Transport().events())
