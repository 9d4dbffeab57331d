"""The Enrolment servicer: a one-time token and a CSR in, a practice certificate out."""

from __future__ import annotations

import asyncio
import logging

import grpc

from coordinator import ca as enrolment
from coordinator.services import domain_errors
from coordinator.store import Store
from fedpeer import wire
from fedpeer.identity import CertificateAuthority, cert_to_pem, fingerprint
from fedpeer.policy import DisclosurePolicy
from fedpeer.v1 import enrolment_pb2, enrolment_pb2_grpc

log = logging.getLogger("fedpeer.coordinator")


class EnrolmentServicer(enrolment_pb2_grpc.EnrolmentServicer):
    """Issues practice certificates against one-time tokens."""

    def __init__(
        self, store: Store, ca: CertificateAuthority, network_policy: DisclosurePolicy
    ) -> None:
        self._store = store
        self._ca = ca
        self._network_policy = network_policy

    @domain_errors
    async def Enrol(
        self, request: enrolment_pb2.EnrolRequest, context: grpc.aio.ServicerContext
    ) -> enrolment_pb2.EnrolResponse:
        """Redeem the token and sign the CSR with the CA-chosen subject."""
        practice_id, cert = await asyncio.to_thread(
            enrolment.enrol, self._store, self._ca, request.token, request.csr_pem
        )
        log.info("event=enrolled practice=%s cert=%s", practice_id, fingerprint(cert)[:16])
        return enrolment_pb2.EnrolResponse(
            practice_id=practice_id,
            certificate_pem=cert_to_pem(cert).decode(),
            ca_chain_pem=self._ca.cert_pem.decode(),
            network_policy=wire.policy_to_proto(self._network_policy),
        )
