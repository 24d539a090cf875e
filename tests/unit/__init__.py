"""Unit tests: one layer at a time."""
