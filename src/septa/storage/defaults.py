"""The Qubes defaults: each qube class's volumes, their sizes, and the pools of a new system."""

from __future__ import annotations

from collections.abc import Mapping

from septa import paths as septa_paths
from septa.storage.copy import reflink_supported
from septa.storage.model import StorageValueError, VolumeConfig
from septa.storage.pool import Pool

GiB = 1 << 30
ROOT_SIZE = 10 * GiB
PRIVATE_SIZE = 2 * GiB
VOLATILE_SIZE = 10 * GiB
#: A disposable's volatile volume also holds what its private volume would (as in Qubes).
DISPVM_VOLATILE_SIZE = ROOT_SIZE + PRIVATE_SIZE

DEFAULT_FILE_POOL = "varlibqubes"
KERNEL_POOL = "linux-kernel"


def _origin(name: str, size: int) -> VolumeConfig:
    return VolumeConfig(name=name, size=size, rw=True, save_on_stop=True)


def _volatile(size: int) -> VolumeConfig:
    return VolumeConfig(name="volatile", size=size, rw=True)


def _kernel() -> VolumeConfig:
    return VolumeConfig(name="kernel", rw=False)


def _snapshot_of(name: str, template_configs: Mapping[str, VolumeConfig] | None) -> VolumeConfig:
    """A snap_on_start volume whose source is the template's volume of the same name.

    When that volume is itself a snapshot (a disposable's template is an AppVM), the
    snapshot is taken of what it snapshots, as Qubes walks the template chain.
    """
    config = VolumeConfig(name=name, rw=True, snap_on_start=True)
    if template_configs is None:
        return config
    parent = template_configs.get(name)
    if parent is None:
        raise StorageValueError(f"The template has no {name} volume to take snapshots of")
    source = parent.source if parent.snap_on_start else parent.vid
    if not source:
        raise StorageValueError(f"The template's {name} volume has no vid yet (create it first)")
    return config.copy(source=source, pool=parent.pool, size=parent.size)


def default_volume_configs(
    vm_class: str, template_configs: Mapping[str, VolumeConfig] | None = None,
) -> dict[str, VolumeConfig]:
    """The volumes a new qube of ``vm_class`` gets, as Qubes 4 defines them.

    ``template_configs`` are the volume configurations of the qube's template (for a
    DispVM: of its disposable template); they give snap_on_start volumes their source,
    pool and size. Without them those volumes have no source yet and the caller must set
    one before the pool initialises them. ``pool`` None means the default pool.
    """
    if vm_class == "AdminVM":
        return {}
    if vm_class == "TemplateVM" or vm_class == "StandaloneVM":
        configs = [_origin("root", ROOT_SIZE), _origin("private", PRIVATE_SIZE),
                   _volatile(VOLATILE_SIZE), _kernel()]
    elif vm_class == "AppVM":
        configs = [_snapshot_of("root", template_configs), _origin("private", PRIVATE_SIZE),
                   _volatile(VOLATILE_SIZE), _kernel()]
    elif vm_class == "DispVM":
        configs = [_snapshot_of("root", template_configs),
                   _snapshot_of("private", template_configs),
                   _volatile(DISPVM_VOLATILE_SIZE), _kernel()]
    else:
        raise StorageValueError(f"No volume defaults for qube class {vm_class!r}")
    return {config.name: config for config in configs}


def default_pools(base: septa_paths.Paths | None = None) -> list[Pool]:
    """The pools of a new system: ``varlibqubes`` in the qubes directory and the kernels.

    ``varlibqubes`` uses the ``file-reflink`` driver where the filesystem can share
    blocks, else ``file``. The pools are not set up yet.
    """
    from septa.storage.registry import create_pool

    where = base or septa_paths.current()
    qubes_base = where.qubes_base
    qubes_base.mkdir(parents=True, exist_ok=True)
    driver = "file-reflink" if reflink_supported(qubes_base) else "file"
    return [
        create_pool(driver, DEFAULT_FILE_POOL, dir_path=str(qubes_base)),
        create_pool("linux-kernel", KERNEL_POOL, dir_path=str(qubes_base / "vm-kernels")),
    ]
