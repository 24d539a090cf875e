"""Backups in the Qubes backup format 4: always encrypted, streamed, restorable by hand."""
