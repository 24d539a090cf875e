"""Septa test suite."""
