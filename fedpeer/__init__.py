"""fedpeer."""

# The one place the version is written: the package metadata reads it (pyproject.toml),
# and the agent reports it to the coordinator on every call (fedpeer.channel).
# 0.3.0: rounds and receipts signed by a signing key (issue 10); 0.4.0: definitions may ask
# for age-sex standardisation, and rounds carry reference rates (STATS.md S17).
__version__ = "0.4.0"
