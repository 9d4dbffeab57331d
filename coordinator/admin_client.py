"""A small asyncio client for the Admin service, used by the CLI and tests.

It connects with the admin certificate from the coordinator's home and turns gRPC
failures into the same plain sentences the agent uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from types import TracebackType
from typing import Self

import grpc

from coordinator import comparison_document
from coordinator.ca import CoordinatorHome
from coordinator.comparisons import Comparison
from fedpeer import wire
from fedpeer.channel import secure_channel, translate
from fedpeer.collection import DefinitionDocument, Round
from fedpeer.errors import CoordinatorUnreachable, FedpeerError
from fedpeer.v1 import admin_pb2, admin_pb2_grpc

TIMEOUT = 30.0


def recorded_address(home: CoordinatorHome) -> str:
    """The mutual-TLS address ``serve`` recorded in the home."""
    if not home.address_file.exists():
        raise CoordinatorUnreachable(
            f"no running coordinator recorded in {home.root}: start `fedpeer-coordinator serve`"
            " or pass --coordinator HOST:PORT"
        )
    return home.address_file.read_text().splitlines()[0].strip()


class ServiceClient:
    """Calls to one coordinator service over mutual TLS; a failure is a plain sentence."""

    def __init__(self, address: str, channel: grpc.aio.Channel, stub: object) -> None:
        self.address = address
        self._channel = channel
        self._stub = stub

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def _call(self, method: str, request: object) -> object:
        try:
            return await getattr(self._stub, method)(request, timeout=TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            raise translate(exc, self.address, probe=True) from None


class AdminClient(ServiceClient):
    """Admin calls over mutual TLS with the home's admin certificate."""

    def __init__(self, address: str, home: CoordinatorHome, server_name: str | None = None):
        channel = secure_channel(
            address,
            home.ca_cert.read_bytes(),
            home.admin_key.read_bytes(),
            home.admin_cert.read_bytes(),
            server_name,
        )
        super().__init__(address, channel, admin_pb2_grpc.AdminStub(channel))

    async def invite(self, practice_id: str, name: str, locality: str) -> tuple[str, str]:
        """A one-time enrolment token for a practice, and when it expires."""
        response = await self.invitation(practice_id, name, locality)
        return response.token, response.expires_at

    async def invitation(
        self, practice_id: str, name: str, locality: str, replace: bool = False
    ) -> admin_pb2.CreateEnrolmentTokenResponse:
        """A token, its expiry, the certificate it would replace, and where to enrol."""
        response = await self._call(
            "CreateEnrolmentToken",
            admin_pb2.CreateEnrolmentTokenRequest(
                practice_id=practice_id, name=name, locality=locality, replace=replace
            ),
        )
        assert isinstance(response, admin_pb2.CreateEnrolmentTokenResponse)
        return response

    async def practices(self) -> list[admin_pb2.Practice]:
        """Every practice."""
        response = await self._call("ListPractices", admin_pb2.ListPracticesRequest())
        assert isinstance(response, admin_pb2.ListPracticesResponse)
        return list(response.practices)

    async def revoke(self, practice_id: str) -> admin_pb2.Practice:
        """Revoke a practice's certificate."""
        response = await self._call(
            "RevokePractice", admin_pb2.RevokePracticeRequest(practice_id=practice_id)
        )
        assert isinstance(response, admin_pb2.Practice)
        return response

    async def start_round(
        self,
        as_of: dt.date,
        definitions: Iterable[DefinitionDocument] = (),
        deadline: dt.datetime | None = None,
        quorum: int = 0,
        standardise_with: str = "",
    ) -> Round:
        """Open a round under the network's policy, with an optional deadline and quorum;
        ``standardise_with`` names a published reference-rates study."""
        request = admin_pb2.StartRoundRequest(
            as_of=as_of.isoformat(),
            definitions=[wire.definition_to_proto(d) for d in definitions],
            deadline="" if deadline is None else deadline.astimezone(dt.UTC).isoformat(),
            quorum=quorum,
            standardise_with=standardise_with,
        )
        response = await self._call("StartRound", request)
        return wire.round_from_proto(response)  # type: ignore[arg-type]

    async def status(self, round_id: str) -> admin_pb2.RoundStatus:
        """Who has answered a round."""
        response = await self._call(
            "GetRoundStatus", admin_pb2.GetRoundStatusRequest(round_id=round_id)
        )
        assert isinstance(response, admin_pb2.RoundStatus)
        return response

    async def close_round(self, round_id: str) -> admin_pb2.RoundStatus:
        """Close a round."""
        response = await self._call("CloseRound", admin_pb2.CloseRoundRequest(round_id=round_id))
        assert isinstance(response, admin_pb2.RoundStatus)
        return response

    async def rounds(self) -> list[admin_pb2.RoundSummary]:
        """Every round, newest first."""
        response = await self._call("ListRounds", admin_pb2.ListRoundsRequest())
        assert isinstance(response, admin_pb2.ListRoundsResponse)
        return list(response.rounds)

    async def cancel_round(self, round_id: str) -> admin_pb2.RoundStatus:
        """Cancel a round not yet published."""
        return await self._round_call("CancelRound", round_id)

    async def publish_round(self, round_id: str) -> admin_pb2.RoundStatus:
        """Publish a closed round."""
        return await self._round_call("PublishRound", round_id)

    async def _round_call(self, method: str, round_id: str) -> admin_pb2.RoundStatus:
        response = await self._call(method, admin_pb2.RoundRequest(round_id=round_id))
        assert isinstance(response, admin_pb2.RoundStatus)
        return response

    async def set_schedule(
        self, deadline_days: int, quorum: int, enabled: bool = True, standardise_with: str = ""
    ) -> admin_pb2.RoundScheduleSetting:
        """Have the coordinator start a standard round at every month end (or stop it)."""
        request = admin_pb2.RoundScheduleSetting(
            enabled=enabled,
            deadline_days=deadline_days,
            quorum=quorum,
            standardise_with=standardise_with,
        )
        response = await self._call("SetRoundSchedule", request)
        assert isinstance(response, admin_pb2.RoundScheduleSetting)
        return response

    async def schedule(self) -> admin_pb2.RoundScheduleSetting:
        """The month-end schedule."""
        response = await self._call("GetRoundSchedule", admin_pb2.GetRoundScheduleRequest())
        assert isinstance(response, admin_pb2.RoundScheduleSetting)
        return response

    async def comparisons(self, round_id: str) -> list[admin_pb2.PracticeRow]:
        """The released rows of a round with their practices."""
        return list((await self._comparisons(round_id)).rows)

    async def comparison(self, round_id: str) -> Comparison:
        """The round's comparison as the coordinator holds it (stored once it closed)."""
        document = (await self._comparisons(round_id)).comparison
        if not document:
            raise FedpeerError("the coordinator is older than this command: upgrade it")
        return comparison_document.load(document)

    async def _comparisons(self, round_id: str) -> admin_pb2.GetComparisonsResponse:
        response = await self._call(
            "GetComparisons", admin_pb2.GetComparisonsRequest(round_id=round_id)
        )
        assert isinstance(response, admin_pb2.GetComparisonsResponse)
        return response

    # -- studies ------------------------------------------------------------------------

    async def create_study(
        self,
        *,
        owner: str,
        title: str,
        purpose: str,
        as_of: dt.date,
        min_practices: int,
        definitions: Iterable[DefinitionDocument],
        budget_rho: float = 0.0,
    ) -> admin_pb2.StudySummary:
        """Create a draft study."""
        request = admin_pb2.CreateStudyRequest(
            owner=owner,
            title=title,
            purpose=purpose,
            as_of=as_of.isoformat(),
            min_practices=min_practices,
            budget_rho=budget_rho,
            definitions=[wire.definition_to_proto(d) for d in definitions],
        )
        return await self._study("CreateStudy", request)

    async def open_study(self, study_id: str) -> admin_pb2.StudySummary:
        """Open a draft study to practices."""
        return await self._study("OpenStudy", admin_pb2.StudyRequest(study_id=study_id))

    async def close_study(self, study_id: str) -> admin_pb2.StudySummary:
        """Close a study to joining; the secure aggregation starts."""
        return await self._study("CloseStudy", admin_pb2.StudyRequest(study_id=study_id))

    async def study(self, study_id: str) -> admin_pb2.StudySummary:
        """A study's document, state and members."""
        return await self._study("GetStudy", admin_pb2.StudyRequest(study_id=study_id))

    async def studies(self) -> list[admin_pb2.StudySummary]:
        """Every study."""
        response = await self._call("ListStudies", admin_pb2.ListStudiesAdminRequest())
        assert isinstance(response, admin_pb2.ListStudiesAdminResponse)
        return list(response.studies)

    async def study_results(self, study_id: str) -> admin_pb2.StudyResults:
        """A published study's pooled rows."""
        response = await self._call("GetStudyResults", admin_pb2.StudyRequest(study_id=study_id))
        assert isinstance(response, admin_pb2.StudyResults)
        return response

    # -- issue 10: excluded submissions, admin certificates ----------------------------

    async def set_excluded(
        self, round_id: str, practice_id: str, excluded: bool, why: str
    ) -> admin_pb2.SubmissionEntry:
        """Leave a submission out of a round's comparisons (or count it again), saying why."""
        request = admin_pb2.SetSubmissionExcludedRequest(
            round_id=round_id, practice_id=practice_id, excluded=excluded, why=why
        )
        response = await self._call("SetSubmissionExcluded", request)
        assert isinstance(response, admin_pb2.SubmissionEntry)
        return response

    async def submissions(self, round_id: str) -> list[admin_pb2.SubmissionEntry]:
        """Every submission to a round and whether comparisons count it."""
        request = admin_pb2.ListSubmissionsRequest(round_id=round_id)
        response = await self._call("ListSubmissions", request)
        assert isinstance(response, admin_pb2.ListSubmissionsResponse)
        return list(response.submissions)

    async def admins(self) -> list[admin_pb2.AdminCertificate]:
        """Every admin certificate seen or revoked."""
        response = await self._call("ListAdmins", admin_pb2.ListAdminsRequest())
        assert isinstance(response, admin_pb2.ListAdminsResponse)
        return list(response.admins)

    async def revoke_admin(self, name_or_fingerprint: str) -> list[admin_pb2.AdminCertificate]:
        """Revoke an admin's certificates by name, or one by fingerprint."""
        request = admin_pb2.RevokeAdminRequest(name_or_fingerprint=name_or_fingerprint)
        response = await self._call("RevokeAdmin", request)
        assert isinstance(response, admin_pb2.ListAdminsResponse)
        return list(response.admins)

    async def _study(self, method: str, request: object) -> admin_pb2.StudySummary:
        response = await self._call(method, request)
        assert isinstance(response, admin_pb2.StudySummary)
        return response
