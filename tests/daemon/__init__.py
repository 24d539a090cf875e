"""Tests against a real septad process (no qubes booted)."""
