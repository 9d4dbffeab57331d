"""Physical line numbers in a CSV file, for error messages only.

DuckDB reads the file; it does not say where a record starts. A record can span
several lines when a quoted field holds a newline, so the line of record N is found by
reading the file with Python's csv module up to that record. This runs only when there
is an error to report, and reads nothing but line counts.
"""

from __future__ import annotations

import csv
from pathlib import Path


def read_header(path: Path) -> list[str]:
    """The column names on the first line (a UTF-8 byte-order mark is allowed)."""
    # Undecodable bytes later in the file are DuckDB's to report, with their line.
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        return next(csv.reader(f), [])


def line_of_record(path: Path, record: int) -> int:
    """The line on which the 1-based data record ``record`` starts (header = line 1).

    Blank lines are skipped, as DuckDB skips them, so that record numbers agree.
    """
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        next(reader, None)
        start = reader.line_num + 1
        seen = 0
        for fields in reader:
            if fields:
                seen += 1
                if seen == record:
                    return start
            start = reader.line_num + 1
    return start
