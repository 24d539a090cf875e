"""What ``qvm-pool`` does, shared by its subcommand syntax and its legacy options."""

from __future__ import annotations

from collections.abc import Iterable

from septa.client.app import Qubes
from septa.client.errors import QubesException
from septa.client.pools import SETTABLE, Pool

from .table import format_table, print_table


def parse_options(tokens: Iterable[str]) -> dict[str, str]:
    """``key=value`` tokens as a mapping; ValueError names the first bad token."""
    options = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise ValueError(f"invalid option {token!r}: expected opt=value")
        options[key] = value
    return options


def list_pools(app: Qubes) -> None:
    """``NAME DRIVER`` of every pool, in the daemon's order."""
    print_table([("NAME", "DRIVER")] + [(pool.name, pool.driver) for pool in app.pools])


def list_drivers(app: Qubes) -> None:
    """``DRIVER OPTIONS`` of every pool driver, sorted by name."""
    drivers = app.pools.drivers()
    rows = [("DRIVER", "OPTIONS")]
    rows += [(name, ", ".join(drivers[name])) for name in sorted(drivers)]
    print_table(rows)


def info_pools(pools: Iterable[Pool]) -> None:
    """The settings of each pool (name first, the rest sorted), an empty line between pools."""
    rows: list[tuple[str, str]] = []
    for index, pool in enumerate(pools):
        if index:
            rows.append(("", ""))
        rows.append(("name", pool.name))
        rows += [item for item in sorted(pool.config.items()) if item[0] != "name"]
    lines = format_table(rows).split("\n")
    print("\n".join(line if line.strip() else "" for line in lines), end="")


def add_pool(app: Qubes, name: str, driver: str, options: dict[str, str]) -> None:
    """Create a pool; QubesException says which pool failed and why."""
    try:
        app.pools.add(name, driver, options)
    except QubesException as e:
        raise QubesException("Failed to add pool %s: %s", name, str(e)) from None


def remove_pools(app: Qubes, names: Iterable[str]) -> list[str]:
    """Remove each pool; return one message per failure."""
    errors = []
    for name in names:
        try:
            app.pools.remove(name)
        except QubesException as e:
            errors.append(f"Failed to remove pool {name}: {e}")
    return errors


def set_pool(pool: Pool, options: dict[str, str]) -> list[str]:
    """Change pool settings; return one message per setting that failed."""
    errors = []
    for key, value in options.items():
        if key not in SETTABLE:
            errors.append(f"Setting option {key} is not supported for pool {pool.name}")
            continue
        try:
            pool.set(key, value)
        except QubesException as e:
            errors.append(f"Failed to set option {key} for pool {pool.name}: {e}")
    return errors
