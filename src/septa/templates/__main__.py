"""Build a template by hand: ``python -m septa.templates RECIPE [--out DIR | --cache DIR]``.

The ``qvm-template build`` tool is the user-facing way; this entry point is for builders
and CI (it prints the progress and the resulting directory).
"""

from __future__ import annotations

import argparse
import sys

from .builder import build, cached_build
from .buildlog import BuildError
from .recipe import RecipeError


def _progress(stage: str, fraction: float) -> None:
    print(f"\r{stage:<10} {fraction:6.1%}", end="" if fraction < 1 else "\n", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m septa.templates", description=__doc__)
    parser.add_argument("recipe", help="recipe file, e.g. templates/recipes/debian-12.toml")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", help="build into this directory (always builds)")
    where.add_argument("--cache", help="cache directory (default $SEPTA_CACHE or "
                       "/var/cache/septa/templates); reuses a build with the same hash")
    args = parser.parse_args(argv)
    try:
        if args.out:
            image = build(args.recipe, args.out, progress=_progress)
        else:
            image = cached_build(args.recipe, args.cache, progress=_progress)
    except (BuildError, RecipeError) as exc:
        print(f"\nsepta: build failed: {exc}", file=sys.stderr)
        return 1
    print(image.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
