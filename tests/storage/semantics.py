"""Run the driver-independent semantic tests of tests/unit/test_storage_drivers on a pool."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from septa.storage import Pool
from tests.unit import test_storage_drivers as drivers

#: The cases that take a pool (and maybe tmp_path); the cross-pool clone makes its own.
CASES: list[Callable[..., Any]] = [
    func for name, func in inspect.getmembers(drivers, inspect.isfunction)
    if name.startswith("test_") and "pool" in inspect.signature(func).parameters
]


def run_case(case: Callable[..., Any], pool: Pool, tmp_path: Path) -> None:
    params = inspect.signature(case).parameters
    kwargs: dict[str, Any] = {"pool": pool}
    if "tmp_path" in params:
        kwargs["tmp_path"] = tmp_path
    case(**kwargs)
