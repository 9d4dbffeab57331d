"""fedpeer."""

# The one place the version is written: the package metadata reads it (pyproject.toml),
# and the agent reports it to the coordinator on every call (fedpeer.channel).
__version__ = "0.2.0"
