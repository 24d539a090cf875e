"""Running the external storage tools (qemu-img, lvm) with argument lists, never a shell."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence


class ToolError(Exception):
    """An external tool failed or is missing; the message holds its own explanation."""


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C.UTF-8"
    if extra:
        env.update(extra)
    return env


def run(args: Sequence[str], *, env: Mapping[str, str] | None = None,
        input_data: bytes | None = None) -> str:
    """Run a tool and return its standard output; ToolError with its stderr if it fails."""
    try:
        result = subprocess.run(list(args), input=input_data, capture_output=True,
                                env=tool_env(env), check=False)
    except FileNotFoundError as exc:
        raise ToolError(f"{args[0]} is not installed") from exc
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip() or \
            result.stdout.decode(errors="replace").strip()
        raise ToolError(f"{os.path.basename(args[0])} {args[1] if len(args) > 1 else ''} "
                        f"failed (exit {result.returncode}): {message}")
    return result.stdout.decode(errors="replace")
