"""Named sets of definitions: the standard set and the practice profile, from their index."""

from __future__ import annotations

import tomllib
from pathlib import Path

from fedpeer.definitions.loader import load_definition
from fedpeer.definitions.model import IndicatorDefinition
from fedpeer.errors import DefinitionError

STANDARD_DIR = Path(__file__).parent / "standard"


def _index(directory: Path) -> dict[str, object]:
    path = directory / "index.toml"
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DefinitionError(f"{path.name}: cannot read the index: {exc}") from None


def load_set(directory: Path, part: str) -> list[IndicatorDefinition]:
    """Load the definitions an index lists under ``part``, in its order."""
    ids = _index(directory).get(part)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise DefinitionError(f"index.toml: field {part}: must be a list of ids")
    out = []
    for ident in ids:
        defn = load_definition(directory / f"{ident}.toml")
        if defn.id != ident:
            raise DefinitionError(
                f"{ident}.toml: field id: is {defn.id!r}, the file name says {ident!r}"
            )
        out.append(defn)
    return out


def load_standard_set() -> list[IndicatorDefinition]:
    """The twelve standard indicators, in the order of INDICATORS.md's table."""
    return load_set(STANDARD_DIR, "indicators")


def load_profile() -> list[IndicatorDefinition]:
    """The practice profile: list size, age-sex breakdown and IMD breakdown."""
    return load_set(STANDARD_DIR, "profile")


def load_round_set() -> list[IndicatorDefinition]:
    """What a standard round evaluates: the twelve indicators, then the profile."""
    return load_standard_set() + load_profile()


def find_standard(ident: str) -> IndicatorDefinition:
    """One standard or profile definition by id."""
    for defn in load_round_set():
        if defn.id == ident:
            return defn
    raise DefinitionError(f"no standard definition with id {ident!r}")
