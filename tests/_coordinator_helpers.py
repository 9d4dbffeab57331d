"""Helpers for the network tests: a real coordinator in-process, real certificates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from coordinator.admin_client import AdminClient
from coordinator.ca import CoordinatorHome, init_home
from coordinator.server import CoordinatorConfig, RunningCoordinator, start_coordinator
from fedpeer.collection import DefinitionDocument, Refusal, Round
from fedpeer.release import ResultRow

AS_OF = dt.date(2026, 9, 30)
DEFINITIONS = (
    DefinitionDocument.of("dm_hba1c_le58", b'{"id": "dm_hba1c_le58", "version": 1}'),
    DefinitionDocument.of("dna_rate", b'{"id": "dna_rate", "version": 1}'),
)


async def start(home: Path, db_url: str | None = None) -> RunningCoordinator:
    """A fresh CA in ``home`` and a coordinator on 127.0.0.1, ports chosen by the OS."""
    if not (home / "ca.key").exists():
        init_home(home)
    config = CoordinatorConfig(home=home, db_url=db_url, announce_poll_seconds=0.2)
    return await start_coordinator(config)


def admin(running: RunningCoordinator) -> AdminClient:
    """An admin client with the home's admin certificate."""
    return AdminClient(running.address, CoordinatorHome(running.home.root))


def rows_for(practice_id: str) -> list[ResultRow]:
    """Fixed released rows, distinct per practice."""
    n = 40 + 5 * (sum(map(ord, practice_id)) % 7)
    return [
        ResultRow("dm_hba1c_le58", numerator=n, denominator=n + 20, value=n / (n + 20)),
        ResultRow("dna_rate", numerator=None, denominator=200, suppressed=True),
        ResultRow("profile.list_size", count=5000, value=5000.0),
    ]


def fixed_prepare(practice_id: str, seen: list[Round] | None = None):
    """A prepare() seam returning fixed rows, recording the rounds it saw."""

    def prepare(round_: Round) -> list[ResultRow]:
        if seen is not None:
            seen.append(round_)
        return rows_for(practice_id)

    return prepare


def refusing_prepare(reason: str):
    """A prepare() seam that declines every round."""

    def prepare(round_: Round) -> Refusal:
        return Refusal(reason)

    return prepare
