"""A round's whole comparison as one stored document, read back exactly as it was built.

``record_comparison`` stores, besides the rows that trends query, the complete
``Comparison`` of a closed round: what its reports, slides and the ``comparisons`` table
are drawn from. Reading a round's comparison is then a read, never a recomputation, and a
report written a year later says what the round said when it closed, whatever the code
that builds comparisons has become since.

The format is plain JSON of the frozen dataclasses, driven by their type hints (so a
field added to a dataclass is stored without a change here), compressed with zlib, and
carrying a version: a document of another version is rebuilt, not misread.
"""

from __future__ import annotations

import json
import types
import typing
import zlib
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import date
from enum import Enum
from functools import cache
from typing import Any

import numpy as np

from coordinator.comparisons import Comparison

VERSION = 1
_DATE = "$date"  # a date among strings (``as_of: str | date``) is marked, so it comes back a date


class DocumentError(ValueError):
    """A stored comparison document that cannot be read as this version's ``Comparison``."""


def dump(comparison: Comparison) -> bytes:
    """The comparison as a compressed document."""
    data = {"version": VERSION, "comparison": _plain(comparison)}
    return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 6)


def load(document: bytes) -> Comparison:
    """The comparison a document holds; DocumentError when it is not one of this version."""
    try:
        data = json.loads(zlib.decompress(document))
    except (zlib.error, ValueError) as exc:
        raise DocumentError("not a stored comparison") from exc
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise DocumentError("a stored comparison of another version")
    try:
        return _typed(Comparison, data["comparison"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DocumentError(f"a stored comparison that does not fit: {exc}") from exc


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value) if f.init}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, date):
        return {_DATE: value.isoformat()}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"a comparison holds a {type(value).__name__}, which is not stored")


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _typed(hint: Any, data: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return data
    if origin in (typing.Union, types.UnionType):
        if data is None:
            if type(None) in args:
                return None
            raise ValueError("a value is missing")
        if isinstance(data, dict) and _DATE in data and date in args:
            return date.fromisoformat(data[_DATE])
        options = [a for a in args if a is not type(None) and a is not date]
        return _typed(options[0], data)
    if isinstance(hint, type) and is_dataclass(hint):
        hints = _hints(hint)
        return hint(**{f.name: _typed(hints[f.name], data[f.name]) for f in fields(hint) if f.init})
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(data)
    if origin in (Mapping, dict):
        key, value = args
        return {_typed(key, k): _typed(value, v) for k, v in data.items()}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], v) for v in data)
        return tuple(_typed(a, v) for a, v in zip(args, data, strict=True))
    if hint is float:
        return float(data)
    if hint in (int, str, bool):
        if not isinstance(data, hint) and not (hint is int and isinstance(data, float)):
            raise TypeError(f"expected {hint.__name__}")
        return hint(data)
    if hint is date:
        return date.fromisoformat(data[_DATE])
    raise TypeError(f"cannot read a stored {hint!r}")
