"""The host's apt sources: which mirror this host uses for a Debian (or Ubuntu) suite.

Templates are built from the same mirror as the host's own packages, read at build time
from ``/etc/apt/sources.list`` and ``/etc/apt/sources.list.d/*.list|*.sources`` (both the
one-line and the deb822 format), so that a build needs no mirror address of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class MirrorNotFound(LookupError):
    """The host's apt sources name no mirror for a suite."""


@dataclass(frozen=True)
class AptSource:
    """One ``deb`` source: its URIs, suites and components."""

    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str = ""


def parse_one_line(text: str) -> list[AptSource]:
    """Sources of a ``.list`` file (``deb [options] URI SUITE COMPONENT...``)."""
    sources = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        options = ""
        rest = line[4:].strip()
        if rest.startswith("["):
            options, _, rest = rest[1:].partition("]")
        fields = rest.split()
        if len(fields) < 2:
            continue
        signed = re.search(r"signed-by=(\S+)", options)
        sources.append(
            AptSource(
                uris=(fields[0],),
                suites=(fields[1],),
                components=tuple(fields[2:]),
                signed_by=signed.group(1) if signed else "",
            )
        )
    return sources


def parse_deb822(text: str) -> list[AptSource]:
    """Sources of a ``.sources`` file (deb822 stanzas)."""
    sources = []
    for stanza in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if not fields.get("uris") or not fields.get("suites"):
            continue
        sources.append(
            AptSource(
                uris=tuple(fields["uris"].split()),
                suites=tuple(fields["suites"].split()),
                components=tuple(fields.get("components", "").split()),
                signed_by=fields.get("signed-by", ""),
            )
        )
    return sources


def host_sources(root: Path = Path("/")) -> list[AptSource]:
    """Every enabled ``deb`` source of the host's apt configuration, in apt's order."""
    etc = root / "etc/apt"
    sources: list[AptSource] = []
    main = etc / "sources.list"
    if main.is_file():
        sources += parse_one_line(main.read_text(encoding="utf-8", errors="replace"))
    directory = etc / "sources.list.d"
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
            if path.suffix == ".list":
                sources += parse_one_line(text)
            elif path.suffix == ".sources":
                sources += parse_deb822(text)
    return sources


def _is_security(suite: str) -> bool:
    return suite.endswith("-security") or suite.endswith("/updates")


def mirror_for(suite: str, sources: Iterable[AptSource]) -> str:
    """The URI the host uses for ``suite``.

    First a source that carries the suite itself; failing that (the host runs another
    release), the source of the host's own suite of the same kind (a ``-security`` suite
    for a ``-security`` suite, the release or ``-updates`` otherwise).
    """
    sources = list(sources)
    for source in sources:
        if suite in source.suites:
            return source.uris[0].rstrip("/")
    want_security = _is_security(suite)
    for source in sources:
        if any(_is_security(s) == want_security for s in source.suites) and (
            "archive-keyring" in source.signed_by or not source.signed_by
        ):
            return source.uris[0].rstrip("/")
    raise MirrorNotFound(
        f"the host's apt sources name no mirror for suite {suite!r}; "
        "set 'mirror' (and 'security_mirror') in the recipe"
    )
