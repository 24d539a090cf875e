"""Turning a template build (root image, kernel, initrd) into a TemplateVM on septad.

The root image is written straight into the template's root volume (dom0's internal
``ImportBegin``/``ImportEnd`` calls; holes are skipped, so a sparse 4 GiB image costs
only its data), the kernel goes into the kernel pool, and the template's properties
and features are set. Any failure removes the half-made template.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import septa.paths
from septa.client.app import Qubes
from septa.client.transport import Transport
from septa.templates.builder import TemplateImage

Progress = Callable[[int, int], None]
CHUNK = 4 << 20


def sparse_copy(source: str, target: str, progress: Progress | None = None) -> None:
    """Copy the data extents of ``source`` into ``target`` (same size), leaving holes."""
    size = os.path.getsize(source)
    with open(source, "rb") as src, open(target, "r+b") as dst:
        dst.truncate(size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            src.seek(start)
            dst.seek(start)
            remaining = end - start
            while remaining:
                block = src.read(min(CHUNK, remaining))
                if not block:
                    break
                dst.write(block)
                remaining -= len(block)
                if progress is not None:
                    progress(end - remaining, size)
            offset = end
        dst.flush()
        os.fsync(dst.fileno())
    if progress is not None:
        progress(size, size)


def install(app: Qubes, image: TemplateImage, name: str, label: str = "black",
            progress: Progress | None = None) -> None:
    """Create TemplateVM ``name`` from ``image``; nothing is left behind on failure."""
    internal = Transport(septa.paths.current().internal_socket)
    app.add_new_vm("TemplateVM", name, label)
    try:
        size = str(image.root.stat().st_size).encode()
        path = internal.call(name, "internal.vm.volume.ImportBegin", "root", size).decode()
        status = b"ok"
        try:
            sparse_copy(str(image.root), path, progress)
        except OSError as exc:
            status = f"fail\n{exc}".encode()
        internal.call(name, "internal.vm.volume.ImportEnd", "root", status)
        version = image.kernel_version
        internal.call("dom0", "internal.kernel.Install", version,
                      f"{image.kernel}\n{image.initrd}".encode())
        vm = app.domains[name]
        vm.props.set("kernel", version)
        vm.props.set("kernelopts", image.kernel_cmdline)
        for feature, value in (("os", "Linux"), ("qrexec", "1"), ("vmexec", "1"),
                               ("template-name", image.name),
                               ("template-buildtime", str(image.manifest.get("built", ""))),
                               ("template-recipe-hash", image.recipe_hash)):
            vm.features[feature] = value
        if not app.props.get("default_kernel").text:
            app.props.set("default_kernel", version)
        if app.props.get("default_template").text == "":
            app.props.set("default_template", name)
    except BaseException:
        app.call(name, "admin.vm.Remove")
        raise
