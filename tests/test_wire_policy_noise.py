"""The disclosure policy's noise fields on the wire: carried, and compatible with old senders."""

from __future__ import annotations

import pytest

from fedpeer import wire
from fedpeer.errors import PolicyError
from fedpeer.policy import DisclosurePolicy, Noise, Rounding
from fedpeer.v1 import common_pb2


@pytest.mark.parametrize(
    "policy",
    [
        DisclosurePolicy(),
        DisclosurePolicy(noise=Noise.DISCRETE_GAUSSIAN, noise_scale=3.0),
        DisclosurePolicy(
            threshold=10,
            rounding=Rounding.MIDPOINT6,
            manual_approval=True,
            noise=Noise.DISCRETE_LAPLACE,
            noise_scale=2.5,
        ),
    ],
)
def test_a_policy_survives_the_wire(policy: DisclosurePolicy) -> None:
    message = common_pb2.DisclosurePolicy.FromString(
        wire.policy_to_proto(policy).SerializeToString()
    )
    back = wire.policy_from_proto(message)
    assert back == policy and back.to_data() == policy.to_data()


def test_a_policy_from_a_sender_without_the_noise_fields_has_no_noise() -> None:
    old = common_pb2.DisclosurePolicy(
        threshold=7, rounding_base=5, rounding="nearest", min_mean_count=8, group_minimum=5
    )
    policy = wire.policy_from_proto(old)
    assert policy == DisclosurePolicy() and policy.to_data() == DisclosurePolicy().to_data()


@pytest.mark.parametrize(
    ("noise", "scale", "problem"),
    [
        ("gaussian", 3.0, "unknown noise"),
        ("discrete_gaussian", 0.0, "noise_scale"),
        ("none", 2.0, "noise_scale"),
        ("discrete_laplace", -1.0, "noise_scale"),
    ],
)
def test_a_malformed_noise_is_a_policy_error(noise: str, scale: float, problem: str) -> None:
    message = wire.policy_to_proto(DisclosurePolicy())
    message.noise, message.noise_scale = noise, scale
    with pytest.raises(PolicyError, match=problem):
        wire.policy_from_proto(message)
