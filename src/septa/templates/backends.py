"""Bootstrap back ends, chosen by the recipe's ``builder`` key.

A back end makes a root file system tree from distribution packages and lists what it
installed. The built-in one is ``mmdebstrap`` (Debian, Ubuntu); others (dnf for Fedora,
pacstrap for Arch) register under the entry point group ``septa.template_builders``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from .buildlog import BuildLog
from .recipe import Recipe, RecipeError

ENTRY_POINT_GROUP = "septa.template_builders"


@dataclass(frozen=True)
class Backend:
    """A bootstrap tool: the host commands it needs and its two operations."""

    name: str
    #: host commands that must be on PATH
    tools: tuple[str, ...]
    #: make the root tree ``rootfs`` (must not exist yet) from the recipe's packages,
    #: with the initrd ``config`` files (path -> text) in place before packages install
    bootstrap: Callable[[Recipe, Path, dict[str, str], BuildLog], None]
    #: installed packages of a root tree: name -> version
    packages: Callable[[Path], dict[str, str]]


def get_backend(name: str) -> Backend:
    """The back end called ``name``: built in, or from an installed plug-in."""
    from . import mmdebstrap

    builtin = {mmdebstrap.BACKEND.name: mmdebstrap.BACKEND}
    if name in builtin:
        return builtin[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            backend = ep.load()
            if not isinstance(backend, Backend):
                raise RecipeError(f"builder {name!r}: entry point {ep.value} is not a Backend")
            return backend
    raise RecipeError(f"builder: unknown builder {name!r} (known: {', '.join(builtin)})")
