"""Template builder: root images for qubes, made from distribution packages by recipe.

A recipe (``templates/recipes/*.toml``) describes a template as data; :mod:`.builder`
turns it into a raw ext4 root image, the kernel and initrd for direct kernel boot, and a
manifest, with the Septa guest agent (:mod:`septa.agent`) installed.
"""

from .builder import TemplateImage, build, cached_build, default_cache_dir
from .buildlog import BuildError
from .recipe import Recipe, RecipeError, load_recipe, recipe_hash

__all__ = [
    "BuildError",
    "Recipe",
    "RecipeError",
    "TemplateImage",
    "build",
    "cached_build",
    "default_cache_dir",
    "load_recipe",
    "recipe_hash",
]
