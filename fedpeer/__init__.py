"""fedpeer."""
