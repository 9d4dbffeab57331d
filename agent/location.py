"""Where an extract is: a folder of files or a database URL (light: no database loaded)."""

from __future__ import annotations

from pathlib import Path

from fedpeer.errors import ExtractError


def is_url(location: str | Path) -> bool:
    """True for a SQLAlchemy URL (``scheme://...``), False for a path."""
    return isinstance(location, str) and "://" in location


def check_location(location: str | Path) -> None:
    """Raise ``ExtractError`` when ``location`` is neither a folder nor a URL; nothing is read."""
    if not is_url(location) and not Path(location).is_dir():
        raise ExtractError(f"{location} is neither a folder nor a database URL")
