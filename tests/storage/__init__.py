"""Storage tests that need root: real loop devices, an xfs filesystem, LVM thin pools."""
