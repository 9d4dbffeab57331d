"""The audit log (``<home>/audit.jsonl``): append-only, hash-chained, what left and to whom.

One JSON object a line, keys sorted, no insignificant whitespace::

    {"as_of":..., "definitions":[...], "entry_hash":..., "prev_hash":..., "receipt":...,
     "release_sha256":..., "round":..., "seq":..., "time":..., "to":...}

``release_sha256`` is the SHA-256 of the release document's bytes: the hash the practice
saw in ``preview``, signed, and the coordinator's receipt names.

``entry_hash`` is the sha256 of the entry's canonical JSON without ``entry_hash``;
``prev_hash`` is the previous entry's ``entry_hash`` (64 zeros for the first), and ``seq``
counts from 1. Any edit, deletion, insertion or reordering breaks a link, and ``verify``
names the first entry where it breaks. The chain cannot stop someone who rewrites the whole
file from a point onwards; keeping the last ``entry_hash`` elsewhere (the coordinator's
receipt, a printout) is what catches that.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.local_db import private_file
from fedpeer.canonical import canonical_json, sha256_hex
from fedpeer.private_files import private_dir

AUDIT_FILE = "audit.jsonl"
GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditProblem:
    """Where the chain first breaks."""

    line: int
    seq: int | None
    problem: str

    def __str__(self) -> str:
        return f"line {self.line} (seq {self.seq}): {self.problem}"


def _entry_hash(entry: dict[str, object]) -> str:
    return sha256_hex(canonical_json({k: v for k, v in entry.items() if k != "entry_hash"}))


class AuditLog:
    """The hash-chained log of what has left the practice."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def at_home(cls, home: Path) -> AuditLog:
        """The audit log of the agent whose home directory is ``home``."""
        return cls(private_dir(home) / AUDIT_FILE)

    def entries(self) -> list[dict[str, object]]:
        """Every entry, in file order (unverified)."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def append(
        self,
        *,
        round_id: str,
        definitions: Sequence[str],
        as_of: str,
        release_sha256: str,
        to: str,
        receipt: str | None,
        now: datetime | None = None,
    ) -> dict[str, object]:
        """Append one entry for a release that left the practice, chained to the last."""
        problem = self.verify()
        if problem is not None:
            raise ValueError(f"the audit log is damaged at {problem}; not appending")
        previous = self.entries()
        entry: dict[str, object] = {
            "seq": len(previous) + 1,
            "time": (now or datetime.now(UTC)).isoformat(),
            "round": round_id,
            "definitions": sorted(definitions),
            "as_of": as_of,
            "release_sha256": release_sha256,
            "to": to,
            "receipt": receipt,
            "prev_hash": previous[-1]["entry_hash"] if previous else GENESIS,
        }
        entry["entry_hash"] = _entry_hash(entry)
        private_file(self.path)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(canonical_json(entry).decode() + "\n")
            out.flush()
            os.fsync(out.fileno())
        return entry

    def verify(self) -> AuditProblem | None:
        """The first break in the chain, or None when every entry links to the one before."""
        if not self.path.exists():
            return None
        prev, expected_seq = GENESIS, 1
        for line_no, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                return AuditProblem(line_no, None, "not a JSON entry")
            if not isinstance(entry, dict):
                return AuditProblem(line_no, None, "not a JSON entry")
            seq = entry.get("seq")
            if entry.get("entry_hash") != _entry_hash(entry):
                return AuditProblem(line_no, seq, "entry was edited (its hash does not match)")
            if entry.get("prev_hash") != prev:
                return AuditProblem(
                    line_no, seq, "chain broken (an entry before it was removed, added or moved)"
                )
            if seq != expected_seq:
                return AuditProblem(line_no, seq, f"sequence number should be {expected_seq}")
            prev, expected_seq = entry["entry_hash"], expected_seq + 1
        return None

    def show(self) -> list[dict[str, object]]:
        """What has left the practice: one summary per entry, oldest first."""
        keys = ("seq", "time", "round", "as_of", "to", "receipt", "release_sha256", "definitions")
        return [{k: e.get(k) for k in keys} for e in self.entries()]
