"""End-to-end tests: real qubes booted under QEMU."""
