"""The Qubes 4.0 policy format: per-service files of ``source target action[,params]``.

A 4.0 file has no service or argument columns: its name (``Service`` or
``Service+arg``) or the ``!include-service`` line that includes it supplies them.
Tokens are written with ``$`` (``$anyvm``, ``$tag:X``, ``$dispvm:$tag:X``; ``@`` is
accepted too), parameters follow the action after commas (``allow,target=X,user=U``),
and ``$include:PATH`` includes another 4.0 file for the same service.

:func:`legacy_files` lists a 4.0 policy directory in the order ``!compat-4.0`` reads
it: by service, each service's ``+arg`` files before its plain file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import names
from .errors import PolicySyntaxError
from .rules import Rule, build_rule

IGNORED_SUFFIXES = (".rpmsave", ".rpmnew", ".swp")


@dataclass(frozen=True, slots=True)
class LegacyInclude:
    """``$include:PATH`` in a 4.0 file."""

    path: str
    origin: str
    lineno: int | None


def parse_legacy_text(
    text: str, service: str | None, argument: str | None, path: str
) -> list[Rule | LegacyInclude]:
    """The rules (for ``service`` / ``argument``, None meaning ``*``) and includes of a file."""
    items: list[Rule | LegacyInclude] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        item = parse_legacy_line(line, service, argument, path, lineno)
        if item is not None:
            items.append(item)
    return items


def parse_legacy_line(
    line: str, service: str | None, argument: str | None, path: str, lineno: int | None
) -> Rule | LegacyInclude | None:
    """One 4.0 line: a rule, an include, or None for a blank line or a comment."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    for prefix in ("$include:", "@include:"):
        if line.startswith(prefix):
            target = line[len(prefix) :].strip()
            if not target or len(target.split()) != 1:
                raise PolicySyntaxError(path, lineno, "invalid include")
            return LegacyInclude(target, path, lineno)
    words = line.replace("$", "@").replace(",", " ").split()
    if len(words) < 3:
        raise PolicySyntaxError(path, lineno, "wrong number of fields")
    source, target, action, *params = words
    return build_rule(
        service or "*",
        "*" if argument is None else "+" + argument,
        source,
        target,
        action,
        params,
        path=path,
        lineno=lineno,
    )


def legacy_files(directory: Path) -> list[tuple[str, str | None, Path]]:
    """(service, argument or None for the plain file, path) of a 4.0 policy directory.

    Dot files, editor and package-manager leftovers, subdirectories and names that are
    not valid call names are skipped, as Qubes does.
    """
    services: dict[str, dict[str | None, Path]] = {}
    for path in directory.iterdir():
        name = path.name
        if name.startswith(".") or name.endswith(IGNORED_SUFFIXES) or not path.is_file():
            continue
        service, plus, argument = name.partition("+")
        if names.service_problem(service) or names.argument_problem(argument):
            continue
        services.setdefault(service, {})[argument if plus else None] = path
    ordered: list[tuple[str, str | None, Path]] = []
    for service in sorted(services):
        by_arg = services[service]
        for argument in sorted(a for a in by_arg if a is not None):
            ordered.append((service, argument, by_arg[argument]))
        if None in by_arg:
            ordered.append((service, None, by_arg[None]))
    return ordered
