"""The Admin API wire format: request header parsing and response / event frames.

A request is ``<method>+<arg> <source> name <dest>\\0<payload>``; a response is
``0\\0<content>`` on success, ``2\\0<ExceptionName>\\0<traceback>\\0<message>\\0`` on error,
and an event stream is a series of ``1\\0<subject>\\0<event>\\0(<key>\\0<value>\\0)*\\0``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from septa.core.errors import ProtocolError

MAX_REQUEST = 65536
_METHOD = re.compile(rb"\A[a-zA-Z0-9_.]+\Z")
_ARG = re.compile(rb"\A[a-zA-Z0-9_.:+@=/-]*\Z")
_SOURCE = re.compile(rb"\A[a-zA-Z0-9_.-]+\Z")
_DEST = re.compile(rb"\A(uuid:)?[a-zA-Z0-9_.-]+\Z")


@dataclass(frozen=True)
class Request:
    """One parsed call."""

    method: str
    arg: str
    source: str
    dest: str
    payload: bytes


def parse_request(data: bytes) -> Request:
    """Parse a whole request; :class:`ProtocolError` names what is wrong."""
    if len(data) > MAX_REQUEST:
        raise ProtocolError(f"Request too large (over {MAX_REQUEST} bytes)")
    header, sep, payload = data.partition(b"\0")
    if not sep:
        raise ProtocolError("Request header is not terminated by NUL")
    fields = header.split(b" ")
    if len(fields) != 4:
        raise ProtocolError("Request header must have 4 space-separated fields")
    method_arg, source, keyword, dest = fields
    if keyword != b"name":
        raise ProtocolError("Third header field must be 'name'")
    method, _, arg = method_arg.partition(b"+")
    if not _METHOD.match(method):
        raise ProtocolError("Invalid method name")
    if not _ARG.match(arg):
        raise ProtocolError("Invalid characters in method argument")
    if not _SOURCE.match(source):
        raise ProtocolError("Invalid source")
    if not _DEST.match(dest):
        raise ProtocolError("Invalid destination")
    return Request(method.decode(), arg.decode(), source.decode(), dest.decode(), payload)


def ok_frame(content: str | bytes) -> bytes:
    body = content.encode("utf-8") if isinstance(content, str) else content
    return b"0\0" + body


def exception_frame(name: str, message: str, traceback: str = "") -> bytes:
    """An error frame; ``%`` is doubled since the client %-formats the message."""
    return b"2\0%s\0%s\0%s\0" % (
        name.encode("ascii", "replace"),
        traceback.replace("\0", " ").encode("utf-8", "replace"),
        message.replace("%", "%%").replace("\0", " ").encode("utf-8", "replace"),
    )


def event_frame(subject: str, event: str, kwargs: Mapping[str, str]) -> bytes:
    parts = [b"1", subject.encode(), event.encode()]
    for key, value in kwargs.items():
        parts += [key.encode(), value.replace("\0", " ").encode("utf-8", "replace")]
    return b"\0".join(parts) + b"\0\0"
