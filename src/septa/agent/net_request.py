"""The JSON requests of the network services, read from stdin and checked field by field.

A request is one JSON object of at most :data:`MAX_REQUEST` bytes; a missing field, an
unknown one or a value of the wrong form is refused with a :class:`NetError` that names
it, before anything is changed.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import BinaryIO

from .net_host import NetError
from .net_links import MAC
from .net_state import VIF

MAX_REQUEST = 1 << 20
SERVICE_NAME = re.compile(r"\A[a-z0-9_.-]{1,64}\Z")


def read(stream: BinaryIO) -> dict[str, object]:
    """The request object on ``stream``."""
    data = stream.read(MAX_REQUEST + 1)
    if len(data) > MAX_REQUEST:
        raise NetError(f"request larger than {MAX_REQUEST} bytes")
    try:
        request = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise NetError(f"request is not JSON: {exc}") from None
    return obj(request, "request")


def obj(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise NetError(f"{where} must be a JSON object")
    return value


def fields(value: dict[str, object], where: str, required: tuple[str, ...],
           optional: tuple[str, ...] = ()) -> None:
    """Refuse missing and unknown keys."""
    for key in required:
        if key not in value:
            raise NetError(f"{where}: {key} is missing")
    for key in value:
        if key not in required and key not in optional:
            raise NetError(f"{where}: unknown field {str(key)[:40]!r}")


def text(value: object, where: str, limit: int = 256) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise NetError(f"{where} must be a string")
    return value


def ipv4(value: object, where: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text(value, where)))
    except ValueError:
        raise NetError(f"{where} is not an IPv4 address: {str(value)[:40]!r}") from None


def ipv4_list(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or len(value) > 16:
        raise NetError(f"{where} must be a list of IPv4 addresses")
    return [ipv4(item, where) for item in value]


def interface(value: object, where: str, netmask: object = None) -> ipaddress.IPv4Interface:
    """``10.0.2.15/24``, or an address and a separate ``netmask``."""
    spec = text(value, where) if netmask is None else \
        f"{ipv4(value, where)}/{ipv4(netmask, where + ' netmask')}"
    try:
        return ipaddress.IPv4Interface(spec)
    except ValueError:
        raise NetError(f"{where} is not an IPv4 address with a prefix: {spec[:60]!r}") from None


def mac(value: object, where: str) -> str:
    found = text(value, where).lower()
    if not MAC.match(found):
        raise NetError(f"{where} is not a MAC address: {found[:40]!r}")
    return found


def vif(value: object, where: str) -> str:
    found = text(value, where)
    if not VIF.match(found):
        raise NetError(f"{where} must be vif<number>: {found[:40]!r}")
    return found


def flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise NetError(f"{where} must be true or false")
    return value


def service_name(value: object) -> str:
    name = text(value, "service name", 64)
    if not SERVICE_NAME.match(name) or name.strip(".") == "":
        raise NetError(f"invalid service name: {name[:40]!r}")
    return name
