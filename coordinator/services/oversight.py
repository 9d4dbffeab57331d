"""The Admin methods of issue 10: excluded submissions and admin certificates.

Thin, as every servicer here: convert, call ``coordinator.exclusions`` or
``coordinator.admins`` with the calling admin's name, map errors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import grpc

from coordinator import admins, exclusions
from coordinator.rounds import isoformat_z
from coordinator.services import domain_errors
from coordinator.services.agent import RoundAnnouncer
from coordinator.services.auth import calling_peer
from coordinator.store import Store
from fedpeer.identity import fingerprint
from fedpeer.v1 import admin_pb2

log = logging.getLogger("fedpeer.coordinator")


def _when(at: dt.datetime | None) -> str:
    return "" if at is None else isoformat_z(at)


def _entry(entry: exclusions.SubmissionEntry) -> admin_pb2.SubmissionEntry:
    return admin_pb2.SubmissionEntry(
        practice_id=entry.practice_id,
        received_at=_when(entry.received_at),
        content_sha256=entry.content_sha256,
        excluded=entry.excluded,
        excluded_by=entry.by,
        excluded_at=_when(entry.at),
        why=entry.why,
    )


def _admins(records: list[admins.AdminCertificate]) -> admin_pb2.ListAdminsResponse:
    return admin_pb2.ListAdminsResponse(
        admins=[
            admin_pb2.AdminCertificate(
                fingerprint=a.fingerprint,
                name=a.name,
                first_seen=_when(a.first_seen),
                revoked_at=_when(a.revoked_at),
                revoked_by=a.revoked_by,
            )
            for a in records
        ]
    )


class AdminOversightMethods:
    """Mixed into the Admin servicer: exclusions and admin certificates, for coordinators."""

    _store: Store
    _announcer: RoundAnnouncer

    @domain_errors
    async def SetSubmissionExcluded(
        self, request: admin_pb2.SetSubmissionExcludedRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.SubmissionEntry:
        """Leave a practice's submission out of a round's comparisons, or count it again."""
        action = (
            exclusions.ExclusionAction.EXCLUDE
            if request.excluded
            else exclusions.ExclusionAction.INCLUDE
        )
        actor = calling_peer().name
        entry = await asyncio.to_thread(
            exclusions.set_excluded,
            self._store,
            request.round_id,
            request.practice_id,
            action,
            actor,
            request.why,
            dt.datetime.now(dt.UTC),
        )
        log.info(
            "event=submission_%s round=%s practice=%s by=%s",
            action.value,
            request.round_id,
            request.practice_id,
            actor,
        )
        return _entry(entry)

    @domain_errors
    async def ListSubmissions(
        self, request: admin_pb2.ListSubmissionsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListSubmissionsResponse:
        """Every submission to a round, and whether comparisons count it."""
        entries = await asyncio.to_thread(exclusions.submission_list, self._store, request.round_id)
        return admin_pb2.ListSubmissionsResponse(submissions=[_entry(e) for e in entries])

    @domain_errors
    async def ListAdmins(
        self, request: admin_pb2.ListAdminsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListAdminsResponse:
        """Every admin certificate seen or revoked."""
        return _admins(await asyncio.to_thread(admins.list_admins, self._store))

    @domain_errors
    async def RevokeAdmin(
        self, request: admin_pb2.RevokeAdminRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListAdminsResponse:
        """Refuse an admin's certificates (by name) or one certificate (by fingerprint)."""
        caller = calling_peer()
        revoked = await asyncio.to_thread(
            admins.revoke_admins,
            self._store,
            request.name_or_fingerprint,
            fingerprint(caller.certificate),
            caller.name,
            dt.datetime.now(dt.UTC),
        )
        log.info("event=admin_revoked count=%d by=%s", len(revoked), caller.name)
        return _admins(revoked)
