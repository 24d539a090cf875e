"""Septa's qvm-* command-line tools, compatible with Qubes OS 4.3's; Admin API calls only."""
