"""The Enrolment servicer: a one-time token and a CSR in, a practice certificate out.

Issuing a certificate needs the CA key. A coordinator started without it (encrypted and
not unlocked, or kept offline) still serves agents and administrators, and answers
enrolment with FAILED_PRECONDITION saying so, before the token is looked at, so an
invitation is not used up by a call that could not succeed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from coordinator import ca as enrolment
from coordinator.ca import CoordinatorKeys
from coordinator.services import domain_errors
from coordinator.store import Store
from fedpeer import wire
from fedpeer.identity import cert_to_pem, fingerprint
from fedpeer.policy import DisclosurePolicy
from fedpeer.v1 import enrolment_pb2, enrolment_pb2_grpc

log = logging.getLogger("fedpeer.coordinator")


class EnrolmentServicer(enrolment_pb2_grpc.EnrolmentServicer):
    """Issues practice certificates against one-time tokens."""

    def __init__(
        self,
        store: Store,
        ca: CoordinatorKeys,
        network_policy: DisclosurePolicy,
        enrolled: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._ca = ca
        self._network_policy = network_policy
        # Told of each enrolment: the stream of a certificate it replaces closes at once.
        self._enrolled = enrolled

    @domain_errors
    async def Enrol(
        self, request: enrolment_pb2.EnrolRequest, context: grpc.aio.ServicerContext
    ) -> enrolment_pb2.EnrolResponse:
        """Redeem the token and sign the CSR with the CA-chosen subject."""
        issuer = self._ca.issuer()  # CaKeyOffline: FAILED_PRECONDITION, the token untouched
        practice_id, cert = await asyncio.to_thread(
            enrolment.enrol, self._store, issuer, request.token, request.csr_pem
        )
        log.info("event=enrolled practice=%s cert=%s", practice_id, fingerprint(cert)[:16])
        if self._enrolled is not None:
            await self._enrolled(practice_id)
        return enrolment_pb2.EnrolResponse(
            practice_id=practice_id,
            certificate_pem=cert_to_pem(cert).decode(),
            ca_chain_pem=self._ca.cert_pem.decode(),
            network_policy=wire.policy_to_proto(self._network_policy),
        )
