"""Tests of the backup format library (no qubes, no daemon)."""
