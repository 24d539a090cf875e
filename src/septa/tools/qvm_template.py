"""qvm-template: build templates from distribution recipes, list and remove them.

``qvm-template build debian-12 [--name N]`` builds (or takes from the cache, keyed by
the recipe's hash) a root image with mmdebstrap and makes it a TemplateVM, showing the
progress. ``list`` shows the installed templates and the recipes that can be built;
``remove`` removes a template (as qvm-remove does, refusing one that is still used).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from septa.client.app import Qubes
from septa.client.errors import QubesException
from septa.templates.builder import cached_build
from septa.templates.buildlog import BuildError
from septa.templates.recipe import RecipeError, load_recipe

from .parser import QubesArgumentParser
from .runner import run
from .template_install import install

PROG = "qvm-template"


def recipe_dirs() -> list[Path]:
    """Where recipes are looked up: ``$SEPTA_RECIPES`` (colon-separated), then the shipped ones."""
    dirs = [Path(d) for d in os.environ.get("SEPTA_RECIPES", "").split(":") if d]
    dirs.append(Path(__file__).resolve().parents[3] / "templates" / "recipes")
    return dirs


def find_recipe(name: str) -> Path:
    given = Path(name)
    if given.suffix == ".toml" and given.is_file():
        return given
    for directory in recipe_dirs():
        candidate = directory / f"{name}.toml"
        if candidate.is_file():
            return candidate
    raise QubesException("No recipe named %s (looked in %s)", name,
                         ", ".join(str(d) for d in recipe_dirs()))


def get_parser() -> QubesArgumentParser:
    parser = QubesArgumentParser(PROG, description="build, list and remove templates")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = sub.add_parser("build", help="build a template from a recipe and install it")
    build.add_argument("recipe", help="recipe name (e.g. debian-12) or path to a .toml file")
    build.add_argument("--name", help="template name (default: the recipe's name)")
    build.add_argument("--label", default="black", help="label of the new template")
    build.add_argument("--cache", help="build cache (default $SEPTA_CACHE/templates)")
    sub.add_parser("list", aliases=["ls"], help="list installed templates and recipes")
    remove = sub.add_parser("remove", aliases=["rm"], help="remove templates")
    remove.add_argument("templates", nargs="+", metavar="TEMPLATE")
    return parser


def _progress_bar() -> Progress:
    return Progress(TextColumn("{task.description:<24}"), BarColumn(), TaskProgressColumn(),
                    TimeElapsedColumn())


def _build(app: Qubes, args: argparse.Namespace) -> int:
    recipe_path = find_recipe(args.recipe)
    recipe = load_recipe(recipe_path)
    name = args.name or recipe.name
    if name in app.domains:
        raise QubesException("Qube %s already exists", name)
    with _progress_bar() as bar:
        task = bar.add_task(f"build {recipe.name}", total=1.0)

        def on_build(stage: str, fraction: float) -> None:
            bar.update(task, completed=fraction, description=f"build {recipe.name}: {stage}")

        try:
            image = cached_build(recipe_path, args.cache, progress=on_build)
        except (BuildError, RecipeError) as exc:
            raise QubesException("Build of %s failed: %s", recipe.name, str(exc)) from None
        bar.update(task, completed=1.0, description=f"build {recipe.name}: done")
        copy = bar.add_task(f"install {name}", total=image.root.stat().st_size)
        install(app, image, name, args.label,
                progress=lambda done, total: bar.update(copy, completed=done, total=total))
    print(f"Template {name} installed (kernel {image.kernel_version}).")
    return 0


def _list(app: Qubes) -> int:
    rows = [("Installed templates", "", "")]
    for vm in app.domains:
        if vm.klass == "TemplateVM":
            features = vm.features
            rows.append((vm.name, features.get("template-name") or "-",
                         features.get("template-buildtime") or "-"))
    recipes = sorted({p.stem for d in recipe_dirs() if d.is_dir() for p in d.glob("*.toml")})
    width = max(len(r[0]) for r in rows) + 2
    print(rows[0][0])
    for name, recipe, built in rows[1:]:
        print(f"{name:<{width}}{recipe:<14}{built}")
    print("Available recipes")
    for recipe in recipes:
        print(recipe)
    return 0


def _remove(app: Qubes, args: argparse.Namespace) -> int:
    code = 0
    for name in args.templates:
        vm = app.domains.get(name)
        if vm is None or vm.klass != "TemplateVM":
            print(f"{PROG}: error: no such template: {name}")
            code = 1
            continue
        try:
            app.domains.remove(name)
        except QubesException as exc:
            print(f"{PROG}: error: {exc}")
            code = 1
    return code


def _main(argv: list[str] | None) -> int:
    args = get_parser().parse_args(argv)
    app = Qubes()
    if args.command == "build":
        return _build(app, args)
    if args.command in ("list", "ls"):
        return _list(app)
    return _remove(app, args)


def main(argv: list[str] | None = None) -> int:
    return run(PROG, lambda: _main(argv))
