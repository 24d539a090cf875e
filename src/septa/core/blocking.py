"""Running blocking work (storage, libvirt, file trees) off the daemon's event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def blocking(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in the default executor."""
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)
