"""The standard indicator set and practice profile, as TOML files and codelists (data)."""
