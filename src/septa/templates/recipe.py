"""Template recipes: TOML files that describe a template as data, and their hash.

The common keys (name, builder, image size, user, kernel, initrd modules, units to
disable) are read into :class:`Recipe`; the table named like the builder (e.g.
``[mmdebstrap]``) is handed to that builder as ``options``, so a new distribution needs a
new recipe, and a new bootstrap tool a new builder module, never a change here.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import septa.agent
import septa.templates

_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,30}$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_UNIT = re.compile(
    r"^[A-Za-z0-9@:._\\-]+\.(service|timer|socket|target|mount|automount|path|slice|swap)$"
)
_MODULE = re.compile(r"^[A-Za-z0-9_-]+$")
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

#: Version of the hash recipe; bump it to invalidate every cached build at once.
HASH_VERSION = b"septa-template-hash-1"


class RecipeError(ValueError):
    """A recipe file that cannot be used, with the offending key in the message."""


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe. ``options`` is the builder's own table, checked by the builder."""

    path: Path
    name: str
    builder: str
    description: str
    image_size: int
    hostname: str
    user: str
    uid: int
    console: str
    console_autologin: bool
    kernel_package: str
    kernel_cmdline: str
    packages: tuple[str, ...]
    initrd_tool: str
    initrd_modules: tuple[str, ...]
    initrd_compress: str
    disable_units: tuple[str, ...]
    mask_units: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)


def parse_size(value: object, key: str = "image_size") -> int:
    """Bytes from ``4GiB``, ``4G``, ``512M`` or a plain integer (bytes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(m.group(1)) * _UNITS[m.group(2).upper()]
    else:
        raise RecipeError(f"{key}: not a size: {value!r}")
    if size < 64 << 20:
        raise RecipeError(f"{key}: {size} bytes is too small for a root image")
    return size


class _Table:
    """Typed access to one TOML table, naming the key in every error."""

    def __init__(self, data: Mapping[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix

    def _get(self, key: str, default: object, kind: type | tuple[type, ...]) -> Any:
        value = self.data.get(key, default)
        if value is None:
            raise RecipeError(f"{self.prefix}{key}: missing")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise RecipeError(f"{self.prefix}{key}: expected {kind}, got {value!r}")
        return value

    def text(
        self, key: str, default: str | None = None, pattern: re.Pattern[str] | None = None
    ) -> str:
        value: str = self._get(key, default, str)
        if pattern is not None and not pattern.match(value):
            raise RecipeError(f"{self.prefix}{key}: invalid value {value!r}")
        return value

    def integer(self, key: str, default: int | None = None) -> int:
        value: int = self._get(key, default, int)
        return value

    def flag(self, key: str, default: bool | None = None) -> bool:
        value: bool = self._get(key, default, bool)
        return value

    def strings(
        self, key: str, default: list[str] | None = None, pattern: re.Pattern[str] | None = None
    ) -> tuple[str, ...]:
        value: list[Any] = self._get(key, default, list)
        for item in value:
            if not isinstance(item, str) or not item:
                raise RecipeError(f"{self.prefix}{key}: expected strings, got {item!r}")
            if pattern is not None and not pattern.match(item):
                raise RecipeError(f"{self.prefix}{key}: invalid value {item!r}")
        return tuple(value)

    def table(self, key: str) -> _Table:
        value: Mapping[str, Any] = self._get(key, {}, dict)
        return _Table(value, f"{self.prefix}{key}.")


def parse_recipe(text: str, path: Path = Path("<recipe>")) -> Recipe:
    """Parse and check the text of a recipe."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from exc
    top = _Table(data)
    name = top.text("name", pattern=_NAME)
    builder = top.text("builder", pattern=_NAME)
    uid = top.integer("uid", 1000)
    if not 1000 <= uid < 60000:
        raise RecipeError(f"uid: {uid} is not a regular user id (1000..59999)")
    initrd = top.table("initrd")
    systemd = top.table("systemd")
    options = data.get(builder, {})
    if not isinstance(options, dict):
        raise RecipeError(f"{builder}: expected a table")
    return Recipe(
        path=path,
        name=name,
        builder=builder,
        description=top.text("description", ""),
        image_size=parse_size(data.get("image_size", "4GiB")),
        hostname=top.text("hostname", name, pattern=_NAME),
        user=top.text("user", "user", pattern=_USER),
        uid=uid,
        console=top.text("console", "hvc0", pattern=_MODULE),
        console_autologin=top.flag("console_autologin", False),
        kernel_package=top.text("kernel_package"),
        kernel_cmdline=top.text("kernel_cmdline", "root=/dev/vda rw console=hvc0"),
        packages=top.strings("packages", []),
        initrd_tool=initrd.text("tool", "initramfs-tools"),
        initrd_modules=initrd.strings("modules", [], pattern=_MODULE),
        initrd_compress=initrd.text("compress", "zstd", pattern=_MODULE),
        disable_units=systemd.strings("disable", [], pattern=_UNIT),
        mask_units=systemd.strings("mask", [], pattern=_UNIT),
        options=options,
    )


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}") from exc
    return parse_recipe(text, path)


def package_dir(package: Any) -> Path:
    """The directory of an imported package."""
    return Path(package.__file__).resolve().parent


def agent_files() -> Iterator[tuple[str, Path]]:
    """The agent's Python files, as (path relative to the agent package, file), sorted."""
    root = package_dir(septa.agent)
    for path in sorted(root.rglob("*.py")):
        yield path.relative_to(root).as_posix(), path


def image_inputs() -> Iterator[tuple[str, Path]]:
    """Every source file whose content ends up in the image: the agent and the builder."""
    for rel, path in agent_files():
        yield "agent/" + rel, path
    root = package_dir(septa.templates)
    for path in sorted(root.rglob("*.py")):
        yield "templates/" + path.relative_to(root).as_posix(), path


def recipe_hash(recipe_path: str | Path) -> str:
    """SHA-256 (hex) of the recipe file and of the agent and builder sources in the image.

    A cache keyed by it rebuilds when the recipe, the agent or the builder changes.
    """
    digest = hashlib.sha256(HASH_VERSION + b"\0")

    def add(label: str, data: bytes) -> None:
        encoded = label.encode("utf-8")
        digest.update(len(encoded).to_bytes(4, "big") + encoded)
        digest.update(len(data).to_bytes(8, "big") + data)

    add("recipe", Path(recipe_path).read_bytes())
    for label, path in image_inputs():
        add(label, path.read_bytes())
    return digest.hexdigest()
