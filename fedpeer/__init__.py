"""fedpeer."""

# The one place the version is written: the package metadata reads it (pyproject.toml),
# and the agent reports it to the coordinator on every call (fedpeer.channel).
__version__ = "0.3.0"  # 0.3.0: rounds and receipts signed by a signing key (issue 10)
