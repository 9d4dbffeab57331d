"""Reading and validating the practice extract (../shared/EXTRACT.md).

    with open_extract("/data/extract", date(2026, 9, 30)) as extract:
        with extract.connect() as conn:
            conn.execute(sa.select(sa.func.count()).select_from(schema.patients))
        print(extract.quality.describe())

``location`` is a directory of CSV files (``patients.csv`` ...), a directory of Parquet
files (``patients.parquet`` ...), or a SQLAlchemy URL (``sqlite:///...``,
``postgresql+psycopg://...``). On every connection of ``extract.engine`` the four names
``patients``, ``clinical_events``, ``medications`` and ``appointments`` are tables or
views with the types of ``agent.extract.schema``. A malformed extract raises
``ExtractError`` from ``open_extract``; nothing is returned for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa

from agent.extract.files import detect_format, open_files
from agent.extract.files import materialize as materialize_views
from agent.extract.quality import DataQualitySummary
from agent.extract.sql import open_database
from agent.extract.validate import validate
from agent.location import check_location, is_url

__all__ = ["DataQualitySummary", "Extract", "check_location", "open_extract"]


@dataclass
class Extract:
    """An opened, validated extract: typed tables on ``engine``, findings in ``quality``."""

    engine: sa.Engine
    quality: DataQualitySummary
    source: str  # "csv", "parquet", "sqlite" or "postgresql"
    as_of: date
    _close: Callable[[], None] = field(repr=False)
    closed: bool = False

    def connect(self) -> sa.Connection:
        """A connection on which the four extract tables can be queried."""
        return self.engine.connect()

    def close(self) -> None:
        """Release the engine (and, for files, DuckDB's memory and temporary files)."""
        if not self.closed:
            self.closed = True
            self._close()

    def __enter__(self) -> Extract:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_extract(
    location: str | Path,
    as_of: date,
    *,
    known_codes: Iterable[str] | None = None,
    memory_limit: str = "1GB",
    threads: int | None = None,
    materialize: bool = False,
) -> Extract:
    """Open and validate an extract; raise ``ExtractError`` if it is malformed.

    ``known_codes`` (every SNOMED code in any codelist) turns on the count of events
    whose code is in no codelist. ``memory_limit`` and ``threads`` bound DuckDB when
    reading files; ``materialize`` copies file tables into DuckDB's own storage after
    validation (one more read now, far faster repeated queries: use it for large CSV
    extracts). It has no effect on a database URL, whose tables are used in place.
    """
    check_location(location)
    text = str(location)
    if is_url(location):
        engine, dialect = open_database(text)
        source = dialect.name
        close: Callable[[], None] = engine.dispose
    else:
        directory = Path(location)
        source = detect_format(directory)
        engine, dialect, close = open_files(
            directory, source, memory_limit=memory_limit, threads=threads
        )
    try:
        with engine.connect() as conn:
            quality = validate(conn, dialect, as_of, known_codes)
            if materialize and source in ("csv", "parquet"):
                materialize_views(conn)
    except BaseException:
        close()
        raise
    return Extract(engine=engine, quality=quality, source=source, as_of=as_of, _close=close)
