"""The ``mmdebstrap`` back end: Debian (and Ubuntu) root trees from the host's mirror.

Reads the recipe's ``[mmdebstrap]`` table (suite, variant, components, extra suites,
optional mirrors, dpkg path filters), runs ``mmdebstrap --mode=root --format=directory``
(no image is mounted: the ext4 image is made from the tree afterwards) and turns its
``I:`` lines into progress.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import apt_sources
from .backends import Backend
from .buildlog import BuildLog
from .recipe import Recipe, RecipeError

#: mmdebstrap's progress lines, in order, and the fraction of the bootstrap they start.
_STEPS = (
    ("running apt-get update", 0.03),
    ("downloading packages", 0.08),
    ("extracting archives", 0.30),
    ("installing essential packages", 0.40),
    ("installing remaining packages", 0.55),
    ("cleaning package lists", 0.95),
    ("success in", 1.0),
)
_VARIANTS = {"extract", "custom", "essential", "apt", "required", "minbase", "buildd",
             "important", "debootstrap", "standard"}
_MODES = {"root", "unshare", "fakeroot", "fakechroot", "chrootless"}


@dataclass(frozen=True)
class Options:
    """The recipe's ``[mmdebstrap]`` table."""

    suite: str
    variant: str = "minbase"
    mode: str = "root"
    components: tuple[str, ...] = ("main",)
    extra_suites: tuple[str, ...] = ()
    mirror: str = ""
    security_mirror: str = ""
    dpkg_path_exclude: tuple[str, ...] = ()
    dpkg_path_include: tuple[str, ...] = ()


def _strings(table: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RecipeError(f"mmdebstrap.{key}: expected a list of strings")
    return tuple(value)


def _string(table: Mapping[str, Any], key: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise RecipeError(f"mmdebstrap.{key}: expected a string")
    return value


def parse_options(recipe: Recipe) -> Options:
    """Check the recipe's ``[mmdebstrap]`` table."""
    table = recipe.options
    known = set(Options.__dataclass_fields__)
    unknown = sorted(set(table) - known)
    if unknown:
        raise RecipeError(f"mmdebstrap: unknown keys {', '.join(unknown)}")
    suite = _string(table, "suite", "")
    if not suite or not suite.replace("-", "").isalnum():
        raise RecipeError("mmdebstrap.suite: missing or invalid")
    opts = Options(
        suite=suite,
        variant=_string(table, "variant", "minbase"),
        mode=_string(table, "mode", "root"),
        components=_strings(table, "components") or ("main",),
        extra_suites=_strings(table, "extra_suites"),
        mirror=_string(table, "mirror", ""),
        security_mirror=_string(table, "security_mirror", ""),
        dpkg_path_exclude=_strings(table, "dpkg_path_exclude"),
        dpkg_path_include=_strings(table, "dpkg_path_include"),
    )
    if opts.variant not in _VARIANTS:
        raise RecipeError(f"mmdebstrap.variant: unknown variant {opts.variant!r}")
    if opts.mode not in _MODES:
        raise RecipeError(f"mmdebstrap.mode: unknown mode {opts.mode!r}")
    return opts


def source_lines(
    opts: Options, sources: Sequence[apt_sources.AptSource] | None = None
) -> list[str]:
    """One ``deb URI SUITE COMPONENTS`` line per suite, mirrors from the recipe or the host."""
    if sources is None and not (opts.mirror and opts.security_mirror):
        sources = apt_sources.host_sources()
    lines = []
    for suite in (opts.suite, *opts.extra_suites):
        security = suite.endswith("-security")
        uri = opts.security_mirror if security else opts.mirror
        if not uri:
            uri = apt_sources.mirror_for(suite, sources or ())
        lines.append(f"deb {uri} {suite} {' '.join(opts.components)}")
    return lines


def command(
    recipe: Recipe, rootfs: Path, setup_dir: Path, sources: Sequence[str]
) -> list[str]:
    """The mmdebstrap command line."""
    opts = parse_options(recipe)
    packages = [*recipe.packages, recipe.kernel_package]
    argv = [
        "mmdebstrap",
        f"--mode={opts.mode}",
        f"--variant={opts.variant}",
        "--format=directory",
        "--include=" + ",".join(packages),
        "--aptopt=Acquire::Retries \"3\"",
        # the initrd configuration must be in place before the kernel package installs
        "--setup-hook=cp -a " + shlex.quote(str(setup_dir)) + '/. "$1"/',
    ]
    argv += [f"--dpkgopt=path-exclude={p}" for p in opts.dpkg_path_exclude]
    argv += [f"--dpkgopt=path-include={p}" for p in opts.dpkg_path_include]
    argv += [opts.suite, str(rootfs), *sources]
    return argv


def bootstrap(recipe: Recipe, rootfs: Path, config: dict[str, str], log: BuildLog) -> None:
    """Make the root tree ``rootfs`` with mmdebstrap."""
    opts = parse_options(recipe)
    try:
        sources = source_lines(opts)
    except apt_sources.MirrorNotFound as exc:
        raise RecipeError(str(exc)) from exc
    for line in sources:
        log.write(f"septa: source: {line}")
    with tempfile.TemporaryDirectory(prefix="septa-setup-") as tmp:
        setup_dir = Path(tmp)
        for path, text in config.items():
            target = setup_dir / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            target.chmod(0o644)
        setup_dir.chmod(0o755)
        step = 0

        def on_line(line: str) -> None:
            nonlocal step
            for i in range(step, len(_STEPS)):
                if _STEPS[i][0] in line:
                    step = i + 1
                    log.report("bootstrap", _STEPS[i][1])
                    break

        log.run(command(recipe, rootfs, setup_dir, sources), on_line=on_line)


def installed_packages(rootfs: Path) -> dict[str, str]:
    """Installed packages (name -> version) from the tree's dpkg status file."""
    status = rootfs / "var/lib/dpkg/status"
    packages: dict[str, str] = {}
    for stanza in status.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line[:1] not in (" ", "\t") and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            arch = fields.get("Architecture", "")
            name = fields["Package"]
            if fields.get("Multi-Arch") == "same" and arch:
                name = f"{name}:{arch}"
            packages[name] = fields.get("Version", "")
    return dict(sorted(packages.items()))


BACKEND = Backend(
    name="mmdebstrap",
    tools=("mmdebstrap",),
    bootstrap=bootstrap,
    packages=installed_packages,
)
