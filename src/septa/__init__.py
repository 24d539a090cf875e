"""Septa: the Qubes OS model of security by compartmentalization on a Linux host with KVM."""

__version__ = "0.1.0"
