"""Reading the policy from files: directories, includes, 4.0 compatibility, reloading.

The policy is the ``*.policy`` files of the policy directories (by default the runtime
directory ``/run/qubes/policy.d`` and ``/etc/qubes/policy.d``, under ``SEPTA_ROOT``),
merged by file name (a name in an earlier directory hides the same name in a later
one) and read in C-locale order of name. File names use ``[0-9a-z_.-]``; names starting
with a dot or not ending in ``.policy`` are ignored, any other name refuses the policy.

Relative paths in ``!include``, ``!include-dir`` and ``!include-service`` (and in
``$include:`` of 4.0 files they bring in) are relative to the directory of the
top-level file being read; ``!compat-4.0`` reads the 4.0 directory, whose ``$include:``
paths are relative to it. An absolute path is taken under ``SEPTA_ROOT`` (unless it
already lies there). An include loop, or nesting deeper than :data:`MAX_DEPTH`, is an
error. Any error refuses the whole policy (:class:`~.errors.PolicyError`): it is never
half-loaded.

:class:`PolicyCache` parses once and re-reads only when a file or directory it read (or
looked for) changed, by comparing ``stat()`` results: no inotify needed.
"""

from __future__ import annotations

import os
import string
import time
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath

import septa.paths

from .decisions import Decision, Deny
from .errors import PolicyError, PolicySyntaxError
from .evaluate import Policy
from .legacy import LegacyInclude, legacy_files, parse_legacy_text
from .parser import Compat40, Include, IncludeDir, IncludeService, parse_text
from .request import Request
from .rules import Rule, build_rule
from .system_info import SystemInfo

POLICY_SUFFIX = ".policy"
FILENAME_CHARS = frozenset(string.ascii_lowercase + string.digits + "_.-")
MAX_DEPTH = 32

Stamp = tuple[int, int, int, int, int] | None


def stamp(path: Path) -> Stamp:
    """What changes when ``path`` changes (None if it does not exist)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return (-1, 0, 0, 0, 0)
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def default_policy_dirs() -> list[Path]:
    """The runtime policy directory, then ``etc/qubes/policy.d`` (under ``SEPTA_ROOT``)."""
    paths = septa.paths.current()
    return [paths.root / "run/qubes/policy.d", paths.policy_dir]


def policy_files(directory: Path) -> list[Path]:
    """The policy files of ``directory`` in reading order; PolicyError for a bad name."""
    found = [
        p
        for p in directory.iterdir()
        if p.suffix == POLICY_SUFFIX and not p.name.startswith(".") and p.is_file()
    ]
    for p in found:
        if not set(p.name) <= FILENAME_CHARS:
            raise PolicyError(f"invalid policy file name: {p} (allowed: [0-9a-z_.-])")
    return sorted(found, key=lambda p: p.name)


class Loader:
    """Reads one policy; :attr:`watched` records the stat of every path it looked at."""

    def __init__(
        self,
        dirs: Sequence[Path] | None = None,
        *,
        legacy_dir: Path | None = None,
        root: Path | None = None,
    ) -> None:
        paths = septa.paths.current()
        self.dirs = list(dirs) if dirs is not None else default_policy_dirs()
        self.legacy_dir = legacy_dir if legacy_dir is not None else paths.legacy_policy_dir
        self.root = root if root is not None else paths.root
        self.watched: dict[Path, Stamp] = {}
        self._rules: list[Rule] = []
        self._files: list[str] = []

    def load(self) -> Policy:
        """Read every file; raise PolicyError (naming file and line) on any problem."""
        self.watched.clear()
        self._rules, self._files = [], []
        try:
            for path in self._top_files():
                self._load_file(path, path.parent, ())
        except OSError as e:
            raise PolicyError(f"cannot read the policy: {e}") from None
        return Policy(self._rules, self._files)

    def _watch(self, path: Path) -> Stamp:
        st = stamp(path)
        self.watched[path] = st
        return st

    def _top_files(self) -> list[Path]:
        chosen: dict[str, Path] = {}
        for directory in self.dirs:
            if self._watch(directory) is None:
                continue
            if not directory.is_dir():
                raise PolicyError(f"policy directory {directory} is not a directory")
            for path in policy_files(directory):
                chosen.setdefault(path.name, path)
        return [chosen[name] for name in sorted(chosen)]

    def _resolve(self, text: str, base: Path) -> Path:
        path = PurePosixPath(text)
        if not path.is_absolute():
            return base / path
        if self.root == Path("/") or Path(path).is_relative_to(self.root):
            return Path(path)
        return self.root / path.relative_to("/")

    def _read(self, path: Path, origin: str | None, lineno: int | None) -> str:
        self._watch(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise PolicySyntaxError(origin or path, lineno, f"cannot read {path}: {e}") from None
        self._files.append(str(path))
        return text

    def _enter(
        self, path: Path, stack: tuple[Path, ...], origin: str, lineno: int | None, what: str
    ) -> tuple[Path, ...]:
        """Check an included file exists and closes no loop; return the new include stack."""
        if self._watch(path) is None or not path.is_file():
            raise PolicySyntaxError(origin, lineno, f"{what}: not a file: {path}")
        real = path.resolve()
        if real in stack:
            raise PolicySyntaxError(origin, lineno, f"include loop: {path} is already being read")
        if len(stack) >= MAX_DEPTH:
            raise PolicySyntaxError(origin, lineno, f"includes nested deeper than {MAX_DEPTH}")
        return (*stack, real)

    def _load_file(self, path: Path, base: Path, stack: tuple[Path, ...]) -> None:
        if not stack:
            stack = (path.resolve(),)
        text = self._read(path, None, None)
        for item in parse_text(text, str(path)):
            if isinstance(item, Rule):
                self._rules.append(item)
            elif isinstance(item, Include):
                target = self._resolve(item.path, base)
                inner = self._enter(target, stack, item.origin, item.lineno, "!include")
                self._load_file(target, base, inner)
            elif isinstance(item, IncludeDir):
                self._include_dir(item, base, stack)
            elif isinstance(item, IncludeService):
                target = self._resolve(item.path, base)
                inner = self._enter(target, stack, item.origin, item.lineno, "!include-service")
                self._load_legacy(target, item.service, item.argument, base, inner)
            elif isinstance(item, Compat40):
                self._compat40(item, stack)

    def _include_dir(self, item: IncludeDir, base: Path, stack: tuple[Path, ...]) -> None:
        directory = self._resolve(item.path, base)
        if self._watch(directory) is None or not directory.is_dir():
            raise PolicySyntaxError(item.origin, item.lineno, f"not a directory: {directory}")
        try:
            files = policy_files(directory)
        except PolicyError as e:
            raise PolicySyntaxError(item.origin, item.lineno, str(e)) from None
        for path in files:
            inner = self._enter(path, stack, item.origin, item.lineno, "!include-dir")
            self._load_file(path, base, inner)

    def _load_legacy(
        self,
        path: Path,
        service: str | None,
        argument: str | None,
        base: Path,
        stack: tuple[Path, ...],
    ) -> None:
        text = self._read(path, None, None)
        for item in parse_legacy_text(text, service, argument, str(path)):
            if isinstance(item, LegacyInclude):
                target = self._resolve(item.path, base)
                inner = self._enter(target, stack, item.origin, item.lineno, "$include")
                self._load_legacy(target, service, argument, base, inner)
            else:
                self._rules.append(item)

    def _compat40(self, item: Compat40, stack: tuple[Path, ...]) -> None:
        legacy = self.legacy_dir
        if self._watch(legacy) is None:
            return
        if not legacy.is_dir():
            raise PolicySyntaxError(item.origin, item.lineno, f"not a directory: {legacy}")
        for service, argument, path in legacy_files(legacy):
            inner = self._enter(path, stack, item.origin, item.lineno, "!compat-4.0")
            self._load_legacy(path, service, argument, legacy, inner)
            if argument is not None:
                # the deny that ended every 4.0 file, kept only after '+arg' files so
                # that the plain file (and then the current policy) still applies
                for target in ("@anyvm", "@adminvm"):
                    self._rules.append(
                        build_rule(
                            service, "+" + argument, "@anyvm", target, "deny", (),
                            path=str(path), lineno=None,
                        )
                    )


def load_policy(
    dirs: Sequence[Path] | None = None,
    *,
    legacy_dir: Path | None = None,
    root: Path | None = None,
) -> Policy:
    """Read the whole policy once (PolicyError if any part is broken)."""
    return Loader(dirs, legacy_dir=legacy_dir, root=root).load()


class PolicyCache:
    """The current policy, re-read only when one of its files or directories changed.

    A broken policy is not replaced by the previous one: :meth:`get` raises
    PolicyError (and :meth:`evaluate` denies) until the files are fixed. Files are
    checked at most every ``min_interval`` seconds (0: on every call).
    """

    def __init__(
        self,
        dirs: Sequence[Path] | None = None,
        *,
        legacy_dir: Path | None = None,
        root: Path | None = None,
        min_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = Loader(dirs, legacy_dir=legacy_dir, root=root)
        self._min_interval = min_interval
        self._clock = clock
        self._checked = float("-inf")
        self._policy: Policy | None = None
        self._error: PolicyError | None = None
        self._loaded = False
        #: how many times the files were read
        self.loads = 0

    def invalidate(self) -> None:
        """Forget the current policy: the next :meth:`get` reads the files again."""
        self._loaded = False

    def _changed(self) -> bool:
        return any(stamp(path) != old for path, old in self._loader.watched.items())

    def get(self) -> Policy:
        """The current policy; PolicyError if it is broken."""
        if not self._loaded:
            self._reload()
        else:
            now = self._clock()
            if now - self._checked >= self._min_interval:
                self._checked = now
                if self._changed():
                    self._reload()
        if self._error is not None:
            raise self._error
        assert self._policy is not None
        return self._policy

    def _reload(self) -> None:
        self.loads += 1
        self._loaded = True
        try:
            self._policy, self._error = self._loader.load(), None
        except PolicyError as e:
            self._policy, self._error = None, e
        self._checked = self._clock()

    def evaluate(self, request: Request, info: SystemInfo) -> Decision:
        """Evaluate ``request`` against the current policy; a broken policy denies."""
        try:
            policy = self.get()
        except PolicyError as e:
            return Deny(f"policy error: {e}")
        return policy.evaluate(request, info)
