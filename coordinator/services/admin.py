"""The Admin servicer behind ``fedpeer-coordinator``: practices, tokens and rounds."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging

import grpc
import pandas as pd

from coordinator import ca as enrolment
from coordinator import comparison_document, round_clock, rounds
from coordinator.ca import CoordinatorKeys
from coordinator.comparison_store import comparison_for
from coordinator.round_states import RoundState
from coordinator.services import domain_errors
from coordinator.services.agent import RoundAnnouncer
from coordinator.services.oversight import AdminOversightMethods
from coordinator.services.studies import AdminStudyMethods
from coordinator.store import PracticeRecord, RoundSchedule, RoundStatus, RoundSummary, Store
from coordinator.studies import StudyBook, reference_rates
from fedpeer import wire
from fedpeer.collection import parse_instant
from fedpeer.errors import PolicyError, RoundError
from fedpeer.policy import DisclosurePolicy
from fedpeer.release import ResultRow
from fedpeer.v1 import admin_pb2, admin_pb2_grpc, common_pb2

log = logging.getLogger("fedpeer.coordinator")


def _practice(record: PracticeRecord) -> admin_pb2.Practice:
    return admin_pb2.Practice(
        practice_id=record.practice_id,
        name=record.name,
        locality=record.locality,
        cert_fingerprint=record.cert_fingerprint or "",
        enrolled_at="" if record.enrolled_at is None else rounds.isoformat_z(record.enrolled_at),
        revoked=record.revoked,
    )


def _instant(moment: dt.datetime | None) -> str:
    return "" if moment is None else rounds.isoformat_z(moment)


def _summary(summary: RoundSummary) -> admin_pb2.RoundSummary:
    return admin_pb2.RoundSummary(
        round_id=summary.round_id,
        as_of=summary.as_of.isoformat(),
        state=summary.state.value,
        deadline=_instant(summary.deadline),
        quorum=summary.quorum,
        submitted=summary.submitted,
        expected=summary.expected,
    )


def _schedule(schedule: RoundSchedule | None) -> admin_pb2.RoundScheduleSetting:
    if schedule is None:
        return admin_pb2.RoundScheduleSetting(enabled=False)
    return admin_pb2.RoundScheduleSetting(
        enabled=True,
        deadline_days=schedule.deadline_days,
        quorum=schedule.quorum,
        last_as_of="" if schedule.last_as_of is None else schedule.last_as_of.isoformat(),
        standardise_with=schedule.standardise_with,
    )


def _status(status: RoundStatus) -> admin_pb2.RoundStatus:
    return admin_pb2.RoundStatus(
        round_id=status.round_id,
        as_of=status.as_of.isoformat(),
        state=status.state.value,
        deadline=_instant(status.deadline),
        quorum=status.quorum,
        quorum_met=status.quorum_met,
        practices=[
            admin_pb2.PracticeRoundState(
                practice_id=p.practice_id,
                state=p.state.value,
                at=_instant(p.at),
                detail=p.detail,
            )
            for p in status.practices
        ],
    )


def _none_if_na(value: object) -> object:
    return None if pd.isna(value) else value  # type: ignore[call-overload]


class AdminServicer(AdminStudyMethods, AdminOversightMethods, admin_pb2_grpc.AdminServicer):
    """Administration for holders of the admin certificate."""

    def __init__(
        self,
        store: Store,
        ca: CoordinatorKeys,
        announcer: RoundAnnouncer,
        network_policy: DisclosurePolicy,
        studies: StudyBook,
        step_seconds: float = 300.0,
    ) -> None:
        self._store = store
        self._ca = ca
        self._announcer = announcer
        self._network_policy = network_policy
        self._studies = studies
        self._step_seconds = step_seconds
        # Where agents reach this coordinator, told to practice IT with each token; the
        # server sets them once its ports are bound.
        self.agent_address = ""
        self.enrol_port = 0

    @domain_errors
    async def CreateEnrolmentToken(
        self, request: admin_pb2.CreateEnrolmentTokenRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.CreateEnrolmentTokenResponse:
        """Invite a practice with a one-time token."""
        validity = (
            dt.timedelta(hours=request.valid_hours)
            if request.valid_hours > 0
            else enrolment.DEFAULT_TOKEN_VALIDITY
        )
        before = await asyncio.to_thread(self._store.practice, request.practice_id)
        token, expires = await asyncio.to_thread(
            enrolment.create_token,
            self._store,
            self._ca.cert,
            request.practice_id,
            request.name,
            request.locality,
            validity,
            None,
            request.replace,
        )
        enrolled = before is not None and before.cert_fingerprint and not before.revoked
        log.info("event=token_created practice=%s replaces=%s", request.practice_id, enrolled)
        return admin_pb2.CreateEnrolmentTokenResponse(
            token=token,
            expires_at=rounds.isoformat_z(expires),
            replaces_fingerprint=before.cert_fingerprint if enrolled and before else "",
            agent_address=self.agent_address,
            enrol_port=self.enrol_port,
        )

    @domain_errors
    async def ListPractices(
        self, request: admin_pb2.ListPracticesRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListPracticesResponse:
        """Every practice, enrolled or invited."""
        records = await asyncio.to_thread(self._store.list_practices)
        return admin_pb2.ListPracticesResponse(practices=[_practice(r) for r in records])

    @domain_errors
    async def RevokePractice(
        self, request: admin_pb2.RevokePracticeRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.Practice:
        """Refuse a practice's certificate from now on."""
        record = await asyncio.to_thread(self._store.revoke_practice, request.practice_id)
        await self._announcer.practice_changed(request.practice_id, record)  # its streams close
        log.info("event=revoked practice=%s", request.practice_id)
        return _practice(record)

    @domain_errors
    async def StartRound(
        self, request: admin_pb2.StartRoundRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Round:
        """Open and sign a round, and wake the subscribed agents."""
        as_of = wire.parse_date(request.as_of)
        if request.HasField("policy"):
            raise PolicyError(
                "a round cannot set the disclosure policy: every round carries the network's"
            )
        definitions = [wire.definition_from_proto(d) for d in request.definitions]
        deadline = parse_instant(request.deadline) if request.deadline else None
        standardisation = None
        if request.standardise_with:
            standardisation = await asyncio.to_thread(
                reference_rates, self._studies, request.standardise_with, definitions
            )
        round_ = await asyncio.to_thread(
            rounds.start_round,
            self._store,
            self._ca.signer,
            as_of,
            definitions,
            self._network_policy,
            deadline,
            request.quorum,
            standardisation=standardisation,
        )
        await self._announcer.refresh()
        log.info("event=round_started round=%s as_of=%s", round_.round_id, as_of)
        return wire.round_to_proto(round_)

    @domain_errors
    async def GetRoundStatus(
        self, request: admin_pb2.GetRoundStatusRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.RoundStatus:
        """Who has submitted, refused, or not answered yet."""
        status = await asyncio.to_thread(self._store.round_status, request.round_id)
        return _status(status)

    @domain_errors
    async def CloseRound(
        self, request: admin_pb2.CloseRoundRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.RoundStatus:
        """Close a round to further submissions."""
        status = await asyncio.to_thread(rounds.close_round, self._store, request.round_id)
        log.info("event=round_closed round=%s", request.round_id)
        return _status(status)

    @domain_errors
    async def ListRounds(
        self, request: admin_pb2.ListRoundsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListRoundsResponse:
        """Every round, newest first."""
        found = await asyncio.to_thread(self._store.list_rounds)
        return admin_pb2.ListRoundsResponse(rounds=[_summary(r) for r in found])

    async def _change(self, round_id: str, state: RoundState) -> admin_pb2.RoundStatus:
        status = await asyncio.to_thread(rounds.change_round, self._store, round_id, state)
        await self._announcer.refresh()  # a cancelled round is no longer announced
        log.info("event=round_%s round=%s", state.value, round_id)
        return _status(status)

    @domain_errors
    async def CancelRound(
        self, request: admin_pb2.RoundRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.RoundStatus:
        """Cancel a round that is not yet published."""
        return await self._change(request.round_id, RoundState.CANCELLED)

    @domain_errors
    async def PublishRound(
        self, request: admin_pb2.RoundRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.RoundStatus:
        """Publish a closed round."""
        return await self._change(request.round_id, RoundState.PUBLISHED)

    @domain_errors
    async def SetRoundSchedule(
        self, request: admin_pb2.RoundScheduleSetting, context: grpc.aio.ServicerContext
    ) -> admin_pb2.RoundScheduleSetting:
        """Start (or with enabled false, stop) the standard round at every month end."""
        if not request.enabled:
            await asyncio.to_thread(
                self._store.set_round_schedule, round_clock.MONTH_END, None, rounds.utc_now()
            )
            log.info("event=round_schedule_removed")
            return _schedule(None)
        schedule = await asyncio.to_thread(
            functools.partial(
                round_clock.set_schedule,
                self._store,
                request.deadline_days,
                request.quorum,
                book=self._studies,
                standardise_with=request.standardise_with,
            )
        )
        log.info(
            "event=round_schedule_set days=%d quorum=%d standardise_with=%s",
            request.deadline_days,
            request.quorum,
            request.standardise_with or "-",
        )
        return _schedule(schedule)

    @domain_errors
    async def GetRoundSchedule(
        self, request: admin_pb2.GetRoundScheduleRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.RoundScheduleSetting:
        """The month-end schedule, if there is one."""
        found = await asyncio.to_thread(self._store.round_schedule, round_clock.MONTH_END)
        return _schedule(found)

    @domain_errors
    async def GetComparisons(
        self, request: admin_pb2.GetComparisonsRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.GetComparisonsResponse:
        """A round's comparison and released rows, each with its practice (none if cancelled)."""
        state = await asyncio.to_thread(self._store.round_state, request.round_id)
        if state is RoundState.CANCELLED:
            raise RoundError(f"round {request.round_id} was cancelled: it is not compared")
        _, comparison = await asyncio.to_thread(comparison_for, self._store, request.round_id)
        frame = await asyncio.to_thread(self._store.released_rows_frame, request.round_id)
        out = []
        for record in frame.to_dict("records"):
            row = ResultRow(
                indicator=record["indicator"],
                category=record["category"],
                numerator=_none_if_na(record["numerator"]),  # type: ignore[arg-type]
                denominator=_none_if_na(record["denominator"]),  # type: ignore[arg-type]
                count=_none_if_na(record["count"]),  # type: ignore[arg-type]
                mean=_none_if_na(record["mean"]),  # type: ignore[arg-type]
                value=_none_if_na(record["value"]),  # type: ignore[arg-type]
                suppressed=bool(record["suppressed"]),
            )
            out.append(
                admin_pb2.PracticeRow(
                    practice_id=record["practice_id"],
                    practice_name=record["practice_name"],
                    locality=record["locality"],
                    row=wire.row_to_proto(row),
                )
            )
        return admin_pb2.GetComparisonsResponse(
            rows=out, comparison=comparison_document.dump(comparison)
        )
