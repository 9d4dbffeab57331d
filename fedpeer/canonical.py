"""The canonical bytes of a release: what is shown in preview, signed, sent and audited.

Format ``fedpeer.release.v1``: UTF-8 JSON, no insignificant whitespace, keys sorted::

    {"format":"fedpeer.release.v1","rows":[{"category":...,"count":...,"denominator":...,
     "indicator":...,"mean":...,"numerator":...,"suppressed":...,"value":...}, ...]}

Rows are sorted by (indicator, category); every column of ``ResultRow`` is present,
a withheld value is ``null``; floats are rounded to 6 decimal places (as in the CSV) and
written by Python's shortest round-trip ``repr``; non-ASCII is escaped. The same rows
always give the same bytes, whatever order they came in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict

from fedpeer.release import ResultRow

FORMAT = "fedpeer.release.v1"
FLOAT_DECIMALS = 6


def _plain(row: ResultRow) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in asdict(row).items():
        if isinstance(value, float):
            value = round(value, FLOAT_DECIMALS)
        out[name] = value
    return out


def canonical_release_bytes(rows: Iterable[ResultRow]) -> bytes:
    """The canonical bytes of released rows (format ``fedpeer.release.v1``)."""
    ordered = sorted(rows, key=lambda r: (r.indicator, r.category))
    document = {"format": FORMAT, "rows": [_plain(r) for r in ordered]}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def rows_from_canonical(data: bytes) -> list[ResultRow]:
    """Rows back from canonical bytes (for the ledger and the coordinator)."""
    document = json.loads(data)
    if document.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} document")
    return [ResultRow(**r) for r in document["rows"]]


def release_digest(rows: Iterable[ResultRow]) -> str:
    """The sha256 of the canonical bytes, in hex."""
    return hashlib.sha256(canonical_release_bytes(rows)).hexdigest()
