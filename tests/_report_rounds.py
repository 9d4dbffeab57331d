"""Real rounds for the report tests: agents over mutual TLS, values drifting month to month."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from pathlib import Path

from _coordinator_helpers import admin, document_for, start

from agent.client import Agent, enrol
from coordinator.ca import init_home
from fedpeer.collection import DefinitionDocument, ReleaseDocument, Round
from fedpeer.definitions import find_standard, serialize
from fedpeer.release import ResultRow

MONTHS = (dt.date(2026, 7, 31), dt.date(2026, 8, 31), dt.date(2026, 9, 30))
PRACTICES = (
    ("A81001", "Riverside Surgery", "North"),
    ("A81002", "Hill Top Medical Centre", "North"),
    ("A81003", "Station Road Practice", "North"),
    ("A81004", "Elm Tree Health Centre", "North"),
    ("A81005", "Market Square Surgery", "North"),
    ("A81006", "Harbour View Practice", "South"),
    ("A81007", "Old Mill Surgery", "South"),
)


def _document(name: str, version: int = 1) -> DefinitionDocument:
    definition = find_standard(name)
    if version != 1:
        definition = replace(definition, version=version)
    return DefinitionDocument.of(name, serialize(definition))


# The first two rounds ask the same questions; the third asks a new version of the HbA1c
# definition, so its trend must start again while the DNA rate's runs on.
SAME = (_document("dm_hba1c_le58"), _document("dna_rate"), _document("profile.list_size"))
CHANGED = (_document("dm_hba1c_le58", 2), SAME[1], SAME[2])
DEFINITIONS = (SAME, SAME, CHANGED)


def hba1c(practice_id: str, as_of: dt.date) -> tuple[int, int]:
    """A practice's released HbA1c counts in a month (multiples of 5, above the threshold)."""
    n = 40 + 5 * (sum(map(ord, practice_id)) % 7) + 5 * (as_of.month - MONTHS[0].month)
    return n, n + 20


def dna(practice_id: str, as_of: dt.date) -> tuple[int, int]:
    """A practice's released missed appointments and appointments in a month."""
    n, _ = hba1c(practice_id, as_of)
    return 5 * (n // 10), 400


def rows(practice_id: str, as_of: dt.date) -> list[ResultRow]:
    """What a practice releases in the round as of ``as_of``."""
    h, hd = hba1c(practice_id, as_of)
    d, dd = dna(practice_id, as_of)
    return [
        ResultRow("dm_hba1c_le58", numerator=h, denominator=hd, value=h / hd),
        ResultRow("dna_rate", numerator=d, denominator=dd, value=d / dd),
        ResultRow("profile.list_size", count=5000, value=5000.0),
    ]


def drifting(practice_id: str):
    """A prepare() seam answering each round with that month's rows."""

    def prepare(round_: Round) -> ReleaseDocument:
        return document_for(practice_id, round_, rows(practice_id, round_.as_of))

    return prepare


async def run_rounds(
    home: Path,
    tmp: Path,
    db_url: str | None = None,
    *,
    leave_open: bool = False,
    threshold: int | None = None,
) -> list[str]:
    """Three closed rounds (and one left open on request); the round ids, oldest first.

    ``threshold``: the network's (stricter than default) suppression threshold.
    """
    if threshold is not None:
        init_home(home).network_file.write_text(f"[disclosure]\nthreshold = {threshold}\n")
    running = await start(home, db_url)
    ids = []
    try:
        async with admin(running) as adm:
            agents = []
            for pid, name, locality in PRACTICES:
                token, _ = await adm.invite(pid, name, locality)
                await enrol(running.address, running.enrol_port, token, tmp / pid)
                agents.append(Agent(tmp / pid, drifting(pid)))
            for as_of, documents in zip(MONTHS, DEFINITIONS, strict=True):
                round_ = await adm.start_round(as_of, documents)
                outcomes = await asyncio.gather(*(a.run_once() for a in agents))
                assert all(o.status == "submitted" for batch in outcomes for o in batch)
                await adm.close_round(round_.round_id)
                ids.append(round_.round_id)
            if leave_open:
                ids.append((await adm.start_round(dt.date(2026, 10, 31), SAME)).round_id)
    finally:
        await running.stop()
    return ids
