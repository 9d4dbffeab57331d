"""The study methods of the Agent, Admin and Analyst services, and the stage clock.

Thin, as every servicer here: convert, call ``coordinator.studies``, map errors. What an
admin or analyst can read of a study is its document, its state and members, and its
pooled results: never a practice's step.

Studies are signed by the signing key, as rounds are; an agent before 0.3.0 checks them
against the CA key, so it is sent CA signatures as it is for rounds
(``rounds.ca_for_old_agents``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import grpc

from coordinator import rounds, studies
from coordinator.ca import CoordinatorKeys
from coordinator.periodic import Periodic
from coordinator.services import domain_errors
from coordinator.services.auth import calling_certificate, calling_peer, calling_practice
from coordinator.services.version import knows_signer
from coordinator.studies import SignedStep, StudyBook, StudyRecord
from fedpeer import wire
from fedpeer.errors import IdentityError
from fedpeer.identity import ROLE_ADMIN
from fedpeer.signing import sign_bytes
from fedpeer.studies import StudyError
from fedpeer.v1 import admin_pb2, admin_pb2_grpc, agent_pb2

log = logging.getLogger("fedpeer.coordinator")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StudyClock(Periodic):
    """Moves aggregating studies on when a stage's time is up (one task per process)."""

    def __init__(self, book: StudyBook, step_seconds: float, tick_seconds: float) -> None:
        super().__init__("study_clock", tick_seconds, self._step)
        self.book, self.step_seconds = book, step_seconds

    async def _step(self) -> None:
        await asyncio.to_thread(studies.advance_all, self.book, _now(), self.step_seconds)


def summary(book: StudyBook, record: StudyRecord) -> admin_pb2.StudySummary:
    """A study for admins and analysts: document, state, members; never a practice's step."""
    members = book.members(record.study.study_id)
    return admin_pb2.StudySummary(
        study=record.study.to_bytes(),
        signature=record.signature,
        signer_certificate=record.signer_certificate,
        state=record.state.value,
        stage=record.stage.value if record.stage else "",
        members=[
            admin_pb2.StudyMember(practice_id=p, state=s.value) for p, s in sorted(members.items())
        ],
        detail=record.detail,
    )


def results(book: StudyBook, study_id: str) -> admin_pb2.StudyResults:
    """A published study's pooled rows."""
    found = book.results(study_id)
    if found is None:
        raise StudyError(f"study {study_id} has no results: it is {book.get(study_id).state}")
    rows, practices, published = found
    return admin_pb2.StudyResults(
        study_id=study_id,
        rows=rows,
        practices=practices,
        published_at=published.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


class AgentStudyMethods:
    """Mixed into the Agent servicer: a practice's view of studies, and its steps."""

    _studies: StudyBook
    _ca: CoordinatorKeys
    _step_seconds: float

    @domain_errors
    async def ListStudies(
        self, request: agent_pb2.ListStudiesRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.ListStudiesResponse:
        """Every study a practice may see (open, aggregating, or finished), and its part."""
        practice_id = calling_practice()

        def listing() -> list[agent_pb2.StudyListing]:
            out = []
            for record in self._studies.all():
                if record.state.value == "draft":
                    continue
                mine = self._studies.members(record.study.study_id).get(practice_id)
                out.append(
                    agent_pb2.StudyListing(
                        study=record.study.to_bytes(),
                        signature=record.signature,
                        signer_certificate=record.signer_certificate,
                        state=record.state.value,
                        stage=record.stage.value if record.stage else "",
                        membership=mine.value if mine else "",
                    )
                )
            return out

        listed = await asyncio.to_thread(listing)
        by_signer = [item for item in listed if item.signer_certificate]
        if by_signer and not knows_signer(context):
            # Before anything is sent: an agent that cannot check the signing key's signature.
            authority = rounds.ca_for_old_agents(self._ca)
            for item in by_signer:
                item.signature = sign_bytes(authority.key, item.study)
                item.signer_certificate = b""
        return agent_pb2.ListStudiesResponse(studies=listed)

    @domain_errors
    async def GetStudyStep(
        self, request: agent_pb2.GetStudyStepRequest, context: grpc.aio.ServicerContext
    ) -> agent_pb2.StudyStepDocument:
        """What this practice needs for the study's current stage."""
        stage, document = await asyncio.to_thread(
            studies.step_document, self._studies, request.study_id, calling_practice()
        )
        return agent_pb2.StudyStepDocument(stage=stage.value, document=document)

    @domain_errors
    async def PostStudyStep(
        self, request: agent_pb2.StudyStepMessage, context: grpc.aio.ServicerContext
    ) -> agent_pb2.StudyStepAck:
        """Take one signed step of this practice's."""
        record = await asyncio.to_thread(
            studies.post_step,
            self._studies,
            calling_practice(),
            calling_certificate(),
            request.study_id,
            SignedStep(request.message, request.signature),
            _now(),
            self._step_seconds,
        )
        return agent_pb2.StudyStepAck(stage=record.stage.value if record.stage else "")


class AdminStudyMethods:
    """Mixed into the Admin servicer: a study's life, for coordinators."""

    _studies: StudyBook
    _ca: CoordinatorKeys
    _step_seconds: float

    @domain_errors
    async def CreateStudy(
        self, request: admin_pb2.CreateStudyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.StudySummary:
        """Create a draft study from its owner's definitions."""
        record = await asyncio.to_thread(
            studies.create_study,
            self._studies,
            self._ca.signer,
            owner=request.owner,
            title=request.title,
            purpose=request.purpose,
            as_of=wire.parse_date(request.as_of),
            min_practices=request.min_practices,
            definitions=[wire.definition_from_proto(d) for d in request.definitions],
            budget_rho=request.budget_rho,
            now=_now(),
        )
        return summary(self._studies, record)

    @domain_errors
    async def OpenStudy(
        self, request: admin_pb2.StudyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.StudySummary:
        """Open a draft study to practices."""
        record = await asyncio.to_thread(
            studies.open_study, self._studies, request.study_id, _now()
        )
        return summary(self._studies, record)

    @domain_errors
    async def CloseStudy(
        self, request: admin_pb2.StudyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.StudySummary:
        """Close a study to joining: the secure aggregation starts."""
        record = await asyncio.to_thread(
            studies.close_study, self._studies, request.study_id, _now()
        )
        return summary(self._studies, record)

    @domain_errors
    async def GetStudy(
        self, request: admin_pb2.StudyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.StudySummary:
        """A study's document, state and members."""
        record = await asyncio.to_thread(self._studies.get, request.study_id)
        return summary(self._studies, record)

    @domain_errors
    async def ListStudies(
        self, request: admin_pb2.ListStudiesAdminRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListStudiesAdminResponse:
        """Every study."""
        records = await asyncio.to_thread(self._studies.all)
        return admin_pb2.ListStudiesAdminResponse(
            studies=[summary(self._studies, r) for r in records]
        )

    @domain_errors
    async def GetStudyResults(
        self, request: admin_pb2.StudyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.StudyResults:
        """A published study's pooled rows."""
        return await asyncio.to_thread(results, self._studies, request.study_id)


class AnalystServicer(admin_pb2_grpc.AnalystServicer):
    """Analysts read the pooled results of the studies they own; coordinators of any."""

    def __init__(self, book: StudyBook) -> None:
        self._studies = book

    def _may_read(self, record: StudyRecord) -> None:
        peer = calling_peer()
        if peer.role != ROLE_ADMIN and record.study.owner != peer.name:
            raise IdentityError(f"study {record.study.study_id} is not yours")

    @domain_errors
    async def ListMyStudies(
        self, request: admin_pb2.ListStudiesAdminRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListStudiesAdminResponse:
        """The caller's studies (every study, for a coordinator)."""
        peer = calling_peer()
        owner = None if peer.role == ROLE_ADMIN else peer.name
        records = await asyncio.to_thread(self._studies.all, owner)
        return admin_pb2.ListStudiesAdminResponse(
            studies=[summary(self._studies, r) for r in records]
        )

    @domain_errors
    async def GetStudyResults(
        self, request: admin_pb2.StudyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.StudyResults:
        """The pooled rows of one of the caller's published studies."""
        record = await asyncio.to_thread(self._studies.get, request.study_id)
        self._may_read(record)
        return await asyncio.to_thread(results, self._studies, request.study_id)
