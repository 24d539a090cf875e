"""``qubes.OpenURL``: open the URL another qube sends (one line on stdin).

As Qubes' service, only ``http://``, ``https://`` and ``ftp://`` URLs are opened; here
they must also be printable ASCII without spaces. Anything else is answered with
``Invalid URL`` on stderr and exit status 1. The URL is opened with the qube's handler
(:mod:`septa.agent.opener`), whose exit status is the service's.
"""

from __future__ import annotations

import os
import sys

from . import opener

SCHEMES = ("http://", "https://", "ftp://")
MAX_URL = 65536


def valid_url(url: str) -> bool:
    """Whether the service opens ``url``."""
    return (url.lower().startswith(SCHEMES) and len(url) <= MAX_URL
            and all(0x21 <= ord(char) <= 0x7E for char in url))


def read_line(fd: int, limit: int = MAX_URL + 1) -> bytes:
    """The first line of ``fd`` (without its newline), at most ``limit`` bytes."""
    data = b""
    while b"\n" not in data and len(data) <= limit:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0][:limit]


def main() -> int:
    """The service."""
    raw = read_line(0)
    try:
        url = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        url = ""
    if not valid_url(url):
        sys.stderr.write("Invalid URL\n")
        return 1
    return opener.open_url(url)
