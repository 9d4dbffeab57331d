"""Revisions of the coordinator store's schema, oldest first."""
