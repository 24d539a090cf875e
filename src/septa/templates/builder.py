"""Build a template from a recipe: root tree, guest files, kernel, ext4 image, manifest.

``build(recipe, out_dir)`` writes ``root.img`` (raw ext4, sparse), ``vmlinuz``,
``initrd.img``, ``manifest.json`` and ``build.log`` into ``out_dir``. Everything is made
in a work directory beside ``out_dir`` and moved in at the end, the manifest last, so a
directory with a manifest holds a complete build; a failed build leaves nothing behind.
``cached_build`` keys builds by :func:`recipe_hash` under ``$SEPTA_CACHE``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from septa import paths as septa_paths

from . import guestfiles, initrd
from .backends import get_backend
from .buildlog import BuildError, BuildLog, ProgressFn
from .recipe import Recipe, load_recipe, recipe_hash

MANIFEST_FORMAT = 1
ROOT_IMAGE = "root.img"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
MANIFEST = "manifest.json"
BUILD_LOG = "build.log"
OUTPUTS = (ROOT_IMAGE, KERNEL, INITRD, BUILD_LOG)

#: Share of each stage in the whole build, for the progress callback.
STAGES = {"prepare": 1.0, "bootstrap": 32.0, "customize": 4.0, "image": 3.0, "finish": 0.5}

_CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"}


@dataclass(frozen=True)
class TemplateImage:
    """A finished template build in ``directory``, described by its manifest."""

    directory: Path
    name: str
    recipe_hash: str
    kernel_version: str
    kernel_cmdline: str
    packages: dict[str, str] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        """The raw ext4 root image."""
        return self.directory / ROOT_IMAGE

    @property
    def kernel(self) -> Path:
        """The kernel for direct kernel boot."""
        return self.directory / KERNEL

    @property
    def initrd(self) -> Path:
        """The initrd for direct kernel boot."""
        return self.directory / INITRD

    @classmethod
    def load(cls, directory: str | Path) -> TemplateImage:
        """Read a finished build; raises ``FileNotFoundError``/``ValueError`` if incomplete."""
        directory = Path(directory)
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"{directory / MANIFEST}: not a Septa template manifest")
        for name in (ROOT_IMAGE, KERNEL, INITRD):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name}: missing")
        return cls(
            directory=directory,
            name=str(data["name"]),
            recipe_hash=str(data["recipe_hash"]),
            kernel_version=str(data["kernel_version"]),
            kernel_cmdline=str(data["kernel_cmdline"]),
            packages=dict(data.get("packages", {})),
            manifest=data,
        )


def default_cache_dir() -> Path:
    """``templates/`` in Septa's cache (``$SEPTA_CACHE``, else /var/cache/septa)."""
    return septa_paths.cache_dir() / "templates"


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if (point + "/").startswith(prefix):
                    found.append(point)
    except OSError:
        pass
    return found


def remove_tree(path: Path) -> None:
    """Delete a build tree, refusing to descend into anything still mounted in it."""
    if not path.exists():
        return
    mounts = _mounts_under(path)
    if mounts:
        raise BuildError(f"not deleting {path}: still mounted in it: {', '.join(mounts)}")
    shutil.rmtree(path)


def _check_tools(tools: tuple[str, ...]) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BuildError(
            f"missing host commands: {', '.join(missing)} "
            "(Debian packages: mmdebstrap, e2fsprogs, coreutils)"
        )
    if os.geteuid() != 0:
        raise BuildError("building a template needs root (mmdebstrap --mode=root, chroot)")


def _kernel_files(rootfs: Path) -> tuple[str, Path, Path]:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise BuildError(f"expected one kernel in /boot, found {[k.name for k in kernels]}")
    version = kernels[0].name.removeprefix("vmlinuz-")
    initrd_path = rootfs / "boot" / f"initrd.img-{version}"
    if not initrd_path.is_file():
        raise BuildError(f"the kernel package made no initrd /boot/{initrd_path.name}")
    return version, kernels[0], initrd_path


def _customize(recipe: Recipe, rootfs: Path, log: BuildLog) -> None:
    guestfiles.install(rootfs, recipe)
    commands = guestfiles.chroot_commands(recipe)
    for i, argv in enumerate(commands):
        log.run(["chroot", str(rootfs), *argv], env=_CHROOT_ENV)
        log.report("customize", (i + 1) / (len(commands) + 1))
    for verb, units in (("disable", recipe.disable_units), ("mask", recipe.mask_units)):
        for unit in units:
            try:
                log.run(["chroot", str(rootfs), "systemctl", verb, unit], env=_CHROOT_ENV)
            except BuildError as exc:
                log.write(f"septa: warning: cannot {verb} {unit}: {exc}")
    log.report("customize", 1.0)


def _make_image(rootfs: Path, image: Path, size: int, log: BuildLog) -> None:
    with open(image, "wb") as f:
        f.truncate(size)
    log.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "septa-root", "-m", "1",
         "-E", "root_owner=0:0", "-d", str(rootfs), str(image)],
        env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LC_ALL": "C"},
    )


def _publish(staged: Path, out_dir: Path) -> None:
    """Move the staged files into ``out_dir``, the manifest last."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for name in OUTPUTS:
        os.replace(staged / name, out_dir / name)
    os.replace(staged / MANIFEST, out_dir / MANIFEST)


def build(
    recipe_path: str | Path, out_dir: str | Path, progress: ProgressFn | None = None
) -> TemplateImage:
    """Build the template of ``recipe_path`` into ``out_dir``; see the module doc."""
    recipe_path = Path(recipe_path).resolve()
    out_dir = Path(out_dir).resolve()
    recipe = load_recipe(recipe_path)
    digest = recipe_hash(recipe_path)
    backend = get_backend(recipe.builder)
    initrd_config = initrd.config_files(recipe)
    _check_tools((*backend.tools, "mke2fs", "chroot"))

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.build-", dir=out_dir.parent))
    work.chmod(0o755)  # apt downloads as _apt into the tree
    try:
        staged = work / "out"
        staged.mkdir()
        rootfs = work / "rootfs"
        with open(staged / BUILD_LOG, "w", encoding="utf-8") as stream:
            log = BuildLog(stream, progress, STAGES)
            log.report("prepare", 0.0)
            log.write(f"septa: building {recipe.name} from {recipe_path} (hash {digest})")
            log.report("bootstrap", 0.0)
            backend.bootstrap(recipe, rootfs, initrd_config, log)
            log.report("customize", 0.0)
            _customize(recipe, rootfs, log)
            kernel_version, kernel, initrd_file = _kernel_files(rootfs)
            shutil.copyfile(kernel, staged / KERNEL)
            shutil.copyfile(initrd_file, staged / INITRD)
            packages = backend.packages(rootfs)
            log.report("image", 0.0)
            _make_image(rootfs, staged / ROOT_IMAGE, recipe.image_size, log)
            log.report("image", 1.0)
            remove_tree(rootfs)
            seconds = round(time.monotonic() - log.started, 1)
            manifest = {
                "format": MANIFEST_FORMAT,
                "name": recipe.name,
                "description": recipe.description,
                "builder": recipe.builder,
                "recipe": recipe_path.name,
                "recipe_hash": digest,
                "kernel_version": kernel_version,
                "kernel_cmdline": recipe.kernel_cmdline,
                "image_size": recipe.image_size,
                "user": recipe.user,
                "agent_port": guestfiles.AGENT_PORT,
                "built": datetime.now(UTC).isoformat(timespec="seconds"),
                "build_seconds": seconds,
                "packages": packages,
            }
            (staged / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
            log.write(f"septa: built {recipe.name} in {seconds} s")
        _publish(staged, out_dir)
        if progress is not None:
            progress("finish", 1.0)
    finally:
        remove_tree(work)
    return TemplateImage.load(out_dir)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_build(
    recipe_path: str | Path,
    cache_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> TemplateImage:
    """The build of ``recipe_path`` from ``cache_dir`` if its hash matches, else a new one.

    Builds live in ``<cache_dir>/<name>-<hash[:16]>``; older builds of the same recipe
    name are removed after a new build succeeds. A lock file serialises builders.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    recipe = load_recipe(recipe_path)
    digest = recipe_hash(recipe_path)
    out_dir = cache / f"{recipe.name}-{digest[:16]}"
    with _locked(cache / f".{recipe.name}.lock"):
        try:
            image = TemplateImage.load(out_dir)
            if image.recipe_hash == digest:
                if progress is not None:
                    progress("cached", 1.0)
                return image
        except (OSError, ValueError, KeyError):
            pass
        image = build(recipe_path, out_dir, progress)
        stale = re.compile(re.escape(recipe.name) + r"-[0-9a-f]{16}$")
        for other in cache.iterdir():
            if other != out_dir and other.is_dir() and stale.match(other.name):
                remove_tree(other)
        return image
