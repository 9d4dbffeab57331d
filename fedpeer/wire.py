"""The one place that converts between protobuf messages and domain objects.

Servicers and the agent's client never read proto fields themselves; they call these
functions, so a change to the wire contract touches this module and the protos only.
Malformed input raises the domain error a servicer maps to INVALID_ARGUMENT.
"""

from __future__ import annotations

import datetime as dt

from fedpeer.canonical import sha256_hex
from fedpeer.collection import DefinitionDocument, Receipt, Round, SignedRelease
from fedpeer.errors import DefinitionError, PolicyError, RoundError
from fedpeer.policy import DisclosurePolicy, Noise, Rounding
from fedpeer.release import ResultRow
from fedpeer.v1 import agent_pb2, common_pb2

_OPTIONAL_INTS = ("numerator", "denominator", "count")
_OPTIONAL_FLOATS = ("mean", "value")


def parse_date(text: str) -> dt.date:
    """An ISO date from the wire; RoundError when it is not one."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise RoundError(f"not an ISO date (YYYY-MM-DD): {text!r}") from exc


def policy_to_proto(policy: DisclosurePolicy) -> common_pb2.DisclosurePolicy:
    """A disclosure policy as sent."""
    return common_pb2.DisclosurePolicy(
        threshold=policy.threshold,
        rounding_base=policy.rounding_base,
        rounding=str(policy.rounding),
        min_mean_count=policy.min_mean_count,
        group_minimum=policy.group_minimum,
        manual_approval=policy.manual_approval,
        noise=str(policy.noise),
        noise_scale=policy.noise_scale,
    )


def policy_from_proto(message: common_pb2.DisclosurePolicy) -> DisclosurePolicy:
    """A disclosure policy as received; PolicyError when it is invalid."""
    try:
        rounding = Rounding(message.rounding)
    except ValueError as exc:
        raise PolicyError(f"unknown rounding {message.rounding!r}") from exc
    try:
        # An empty noise comes from a sender that predates the field: no noise.
        noise = Noise(message.noise or Noise.NONE)
    except ValueError as exc:
        raise PolicyError(f"unknown noise {message.noise!r}") from exc
    return DisclosurePolicy(
        threshold=message.threshold,
        rounding_base=message.rounding_base,
        rounding=rounding,
        min_mean_count=message.min_mean_count,
        group_minimum=message.group_minimum,
        manual_approval=message.manual_approval,
        noise=noise,
        noise_scale=message.noise_scale,
    )


def row_to_proto(row: ResultRow) -> common_pb2.ResultRow:
    """A released row as sent; absent numbers stay absent (proto3 optional)."""
    message = common_pb2.ResultRow(
        indicator=row.indicator, category=row.category, suppressed=row.suppressed
    )
    for name in (*_OPTIONAL_INTS, *_OPTIONAL_FLOATS):
        value = getattr(row, name)
        if value is not None:
            setattr(message, name, value)
    return message


def row_from_proto(message: common_pb2.ResultRow) -> ResultRow:
    """A released row as received."""
    values: dict[str, object] = {}
    for name in _OPTIONAL_INTS:
        values[name] = getattr(message, name) if message.HasField(name) else None
    for name in _OPTIONAL_FLOATS:
        values[name] = getattr(message, name) if message.HasField(name) else None
    return ResultRow(
        indicator=message.indicator,
        category=message.category,
        suppressed=message.suppressed,
        **values,  # type: ignore[arg-type]
    )


def definition_to_proto(doc: DefinitionDocument) -> common_pb2.IndicatorDefinition:
    """An indicator definition document as sent."""
    return common_pb2.IndicatorDefinition(id=doc.id, content_hash=doc.content_hash, body=doc.body)


def definition_from_proto(message: common_pb2.IndicatorDefinition) -> DefinitionDocument:
    """An indicator definition document as received; DefinitionError on a bad hash."""
    if not message.id:
        raise DefinitionError("an indicator definition has no id")
    return DefinitionDocument(message.id, message.content_hash, message.body)


def round_to_proto(round_: Round) -> common_pb2.Round:
    """A signed round as sent."""
    return common_pb2.Round(
        round_id=round_.round_id,
        as_of=round_.as_of.isoformat(),
        policy=policy_to_proto(round_.policy),
        definitions=[definition_to_proto(d) for d in round_.definitions],
        created_at=round_.created_at,
        signature=round_.signature,
        deadline=round_.deadline,
        quorum=round_.quorum,
        signer_certificate=round_.signer_certificate,
        reference_rates=round_.reference_rates,
    )


def round_from_proto(message: common_pb2.Round) -> Round:
    """A round as received (its signature is checked by the caller)."""
    return Round(
        round_id=message.round_id,
        as_of=parse_date(message.as_of),
        policy=policy_from_proto(message.policy),
        definitions=tuple(definition_from_proto(d) for d in message.definitions),
        created_at=message.created_at,
        signature=message.signature,
        deadline=message.deadline,
        quorum=message.quorum,
        signer_certificate=message.signer_certificate,
        reference_rates=message.reference_rates,
    )


def release_to_proto(round_id: str, release: SignedRelease) -> agent_pb2.SubmitRequest:
    """A signed release as sent, with its document's SHA-256 as the idempotency key."""
    return agent_pb2.SubmitRequest(
        round_id=round_id,
        release=release.document,
        release_signature=release.signature,
        idempotency_key=release.digest,
    )


def release_from_proto(message: agent_pb2.SubmitRequest) -> SignedRelease:
    """A signed release as received (the caller verifies the signature and the document)."""
    if not message.release:
        raise RoundError(
            "this submission carries no signed release document: the agent predates signed "
            "releases; upgrade fedpeer on the practice's machine"
        )
    if message.idempotency_key != sha256_hex(message.release):
        raise RoundError("the idempotency key is not the SHA-256 of the release document")
    return SignedRelease(message.release, message.release_signature)


def receipt_to_proto(receipt: Receipt) -> common_pb2.Receipt:
    """A receipt as sent."""
    return common_pb2.Receipt(
        submission_id=receipt.submission_id,
        round_id=receipt.round_id,
        practice_id=receipt.practice_id,
        received_at=receipt.received_at,
        content_sha256=receipt.content_sha256,
        signature=receipt.signature,
        signer_certificate=receipt.signer_certificate,
    )


def receipt_from_proto(message: common_pb2.Receipt) -> Receipt:
    """A receipt as received (its signature is checked by the caller)."""
    return Receipt(
        submission_id=message.submission_id,
        round_id=message.round_id,
        practice_id=message.practice_id,
        received_at=message.received_at,
        content_sha256=message.content_sha256,
        signature=message.signature,
        signer_certificate=message.signer_certificate,
    )
