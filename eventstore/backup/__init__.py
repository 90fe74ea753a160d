"""Backups of the event store: the log cut at a gap-free checkpoint (DESIGN §6)."""
