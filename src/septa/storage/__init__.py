"""Storage: pools of volumes with pluggable drivers, the Qubes storage model.

Drivers: ``file`` (image files, qcow2 copy-on-write), ``file-reflink`` (raw files with
reflink copies), ``lvm_thin`` (LVM thin volumes), ``linux-kernel`` (kernels for direct
boot); others come from Python entry points of group ``septa.storage``.
"""

from septa.storage.copy import Progress
from septa.storage.defaults import default_pools, default_volume_configs
from septa.storage.model import BackingFile, BlockDevice, StorageValueError, VolumeConfig
from septa.storage.pool import Pool
from septa.storage.registry import (
    create_pool,
    driver_names,
    driver_parameters,
    get_driver,
    register_driver,
)
from septa.storage.volume import Volume

__all__ = [
    "BackingFile", "BlockDevice", "Pool", "Progress", "StorageValueError", "Volume",
    "VolumeConfig", "create_pool", "default_pools", "default_volume_configs", "driver_names",
    "driver_parameters", "get_driver", "register_driver",
]
