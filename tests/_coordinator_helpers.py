"""Helpers for the network tests: a real coordinator in-process, real certificates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from agent.identity_store import AgentIdentity
from coordinator.admin_client import AdminClient
from coordinator.ca import CoordinatorHome, init_home
from coordinator.server import CoordinatorConfig, RunningCoordinator, start_coordinator
from fedpeer import wire
from fedpeer.collection import (
    Answer,
    DefinitionDocument,
    Refusal,
    ReleaseDocument,
    Round,
    SignedRelease,
)
from fedpeer.definitions import find_standard, serialize
from fedpeer.identity import key_from_pem
from fedpeer.release import ResultRow
from fedpeer.signing import sign_bytes

AS_OF = dt.date(2026, 9, 30)
DEFINITIONS = tuple(
    DefinitionDocument.of(name, serialize(find_standard(name)))
    for name in ("dm_hba1c_le58", "dna_rate", "profile.list_size")
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


def document_for(practice_id: str, round_: Round, rows: list[ResultRow]) -> ReleaseDocument:
    """A release document answering ``round_``'s definitions with ``rows``, by indicator."""
    answers = tuple(
        Answer(
            d.content_hash,
            d.id,
            round_.policy,
            tuple(r for r in rows if r.indicator == d.id or r.indicator.startswith(d.id + ".")),
        )
        for d in round_.definitions
    )
    return ReleaseDocument(practice_id, round_.round_id, round_.as_of, answers)


def fixed_prepare(practice_id: str, seen: list[Round] | None = None):
    """A prepare() seam answering with fixed rows, recording the rounds it saw."""

    def prepare(round_: Round) -> ReleaseDocument:
        if seen is not None:
            seen.append(round_)
        return document_for(practice_id, round_, rows_for(practice_id))

    return prepare


def refusing_prepare(reason: str):
    """A prepare() seam that declines every round."""

    def prepare(round_: Round) -> Refusal:
        return Refusal(reason)

    return prepare


def signed_request(identity: AgentIdentity, round_: Round, rows: list[ResultRow]):
    """The SubmitRequest an agent would send: its document of ``rows``, signed by its key."""
    data = document_for(identity.practice_id, round_, rows).to_bytes()
    signed = SignedRelease(data, sign_bytes(key_from_pem(identity.key_pem), data))
    return wire.release_to_proto(round_.round_id, signed)
