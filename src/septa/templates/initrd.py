"""Initrd generators: the configuration that makes a template's initrd small.

The recipe names the tool (``[initrd] tool``) and the modules the kernel needs to reach
its root file system. The files returned here are written into the new root *before* its
packages are installed, so the initrd that the kernel package builds is already the small
one, and later kernel updates in the template keep it so.
"""

from __future__ import annotations

from .recipe import Recipe, RecipeError


def initramfs_tools(recipe: Recipe) -> dict[str, str]:
    """Debian/Ubuntu initramfs-tools: ``MODULES=list`` with only the recipe's modules."""
    conf = (
        "# Septa: only the modules listed in modules.d/septa (virtio); see the recipe.\n"
        "MODULES=list\n"
        f"COMPRESS={recipe.initrd_compress}\n"
    )
    modules = "# Septa: modules the initrd loads (recipe [initrd] modules).\n" + "".join(
        m + "\n" for m in recipe.initrd_modules
    )
    return {
        "/etc/initramfs-tools/conf.d/septa.conf": conf,
        # mkinitramfs reads /usr/share/initramfs-tools/modules.d/* besides the conffile
        # /etc/initramfs-tools/modules, which must not exist before the package installs.
        "/usr/share/initramfs-tools/modules.d/septa": modules,
    }


GENERATORS = {"initramfs-tools": initramfs_tools}


def config_files(recipe: Recipe) -> dict[str, str]:
    """The initrd configuration files for the recipe's tool (path in the root -> text)."""
    try:
        generator = GENERATORS[recipe.initrd_tool]
    except KeyError:
        raise RecipeError(
            f"initrd.tool: unknown tool {recipe.initrd_tool!r} (known: {', '.join(GENERATORS)})"
        ) from None
    return generator(recipe)
