"""septad: the Admin API daemon (wire protocol server and the admin.* / internal.* methods)."""
