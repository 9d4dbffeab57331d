"""Canonical bytes and the one hash: what both sides hash, sign, store and compare.

Every document fedpeer hashes or signs (a round's manifest, a release, a receipt, a
definition's wire form) is canonical JSON: keys sorted, no insignificant whitespace,
UTF-8, no NaN or infinity. The same document always gives the same bytes, so a hash
names its content and a signature covers exactly what was shown.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FLOAT_DECIMALS = 6  # released values travel rounded to 6 decimal places


def canonical_json(document: Any) -> bytes:
    """The canonical bytes of a JSON-able document."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of bytes, lower-case hex: the one hash fedpeer names content by."""
    return hashlib.sha256(data).hexdigest()


def round_float(value: float | None) -> float | None:
    """A released float as it travels: rounded to ``FLOAT_DECIMALS`` places."""
    return None if value is None else round(value, FLOAT_DECIMALS)
