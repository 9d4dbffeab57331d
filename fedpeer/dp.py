"""Optional differential privacy: noise on every count, through OpenDP, before rounding.

When a policy names ``noise`` (discrete Gaussian or discrete Laplace, with a scale), each
*atomic* count gets independent noise from OpenDP's samplers, and ``fedpeer.disclosure``
then applies the usual rules to the noisy counts. Atomic counts are those no other count
is built from, so that one unit counted moves exactly one of them by one in each
indicator, and totals stay consistent:

- a proportion: the numerator and its complement (the denominator is their sum);
- a breakdown: its cells and the unlisted remainder (the total is their sum);
- strata with their whole: the strata and the remainder (the whole is their sum);
- a rate: numerator and denominator; a count: itself; a mean: its count (and its sum).

**Noise, then rounding.** Rounding and suppression after noise are post-processing of a
differentially private result, so the guarantee holds whatever they do, and the released
values stay on the rounding grid that the coordinator checks. Rounding first and adding
noise after would leave values off the grid, and suppression decided on true counts
would leak through which cells are withheld.

**Means.** A mean is a sum over a count, and both are noised: the count as above, the
sum of each unit's value clipped to the definition's ``value_bound`` (a UPC index is at
most 1, a consultation counts up to 60 minutes), on a grid of ``SUM_STEPS`` steps per
bound with noise scaled to match, so one unit moves the sum by at most one bound. The
released mean is the noisy sum over the noisy count. A mean whose sum is not given (a
stratum) is not released under noise at all.

**Gates read true values.** Suppression (``threshold``, ``min_mean_count``, the
complement rule) is decided on the true counts, and the released values are the noisy
ones (``disclosure.release(..., values=noisy)``): a gate on a noisy count would let a
mean over 3 appointments through whenever the noise lifted its count past the minimum.

**Cost.** One unit moves one atom per indicator by one (and a mean's sum by at most a
bound), so a release of k indicators, m of them means, costs k + m times the cost at
sensitivity 1 (OpenDP's own privacy map): rho = (k + m) / (2 scale^2) for the discrete
Gaussian (zero-concentrated DP); for the discrete Laplace epsilon = (k + m) / scale,
accounted as rho = epsilon^2 / 2. The unit is what the indicator counts: a patient for
patient-based indicators, an appointment or an item for the others (one patient's many
appointments are not bounded here).

Randomness comes from OpenDP's cryptographically secure sampler: every call differs, so
the agent's ledger must record the first noisy release and return it for every repeat.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

from fedpeer.disclosure import release
from fedpeer.errors import PolicyError
from fedpeer.measures import (
    Breakdown,
    Count,
    IndicatorResult,
    Kind,
    Mean,
    Measure,
    Proportion,
    Rate,
)
from fedpeer.policy import DisclosurePolicy, Noise

Sampler = Callable[[int], int]


SUM_STEPS = 1000  # a mean's sum is noised in steps of 1/1000 of its bound


@dataclass(frozen=True)
class MeanSum:
    """A mean's true sum with each unit's value clipped to ``bound``; stays in the practice."""

    clipped_sum: Fraction
    bound: float


@cache
def _measurement(noise: Noise, scale: float) -> object:
    try:
        import opendp.prelude as dp
    except ImportError as exc:  # pragma: no cover - the tests install the noise extra
        raise PolicyError(
            "this network's policy adds noise, which needs the opendp package: "
            "pip install 'fedpeer[noise]'"
        ) from exc
    dp.enable_features("contrib")
    space = dp.atom_domain(T=int), dp.absolute_distance(T=int)
    if noise == Noise.DISCRETE_GAUSSIAN:
        return space >> dp.m.then_gaussian(scale=scale)
    return space >> dp.m.then_laplace(scale=scale)


def opendp_sampler(policy: DisclosurePolicy, sensitivity: int = 1) -> Sampler:
    """A function adding the policy's noise, scaled for ``sensitivity``, to one integer."""
    if policy.noise == Noise.NONE:
        raise PolicyError("this policy adds no noise")
    measurement = _measurement(policy.noise, policy.noise_scale * sensitivity)
    return lambda x: int(measurement(x))  # type: ignore[operator]


def cost_rho(kinds: Iterable[Kind], policy: DisclosurePolicy) -> float:
    """The privacy loss of one noisy release of indicators of these kinds, as zCDP rho.

    Decided from the kinds alone, before any data is read: a mean costs twice (its count
    and its sum), every other indicator once.
    """
    if policy.noise == Noise.NONE:
        return 0.0
    per_indicator = float(_measurement(policy.noise, policy.noise_scale).map(1))  # type: ignore[attr-defined]
    if policy.noise == Noise.DISCRETE_LAPLACE:
        per_indicator = per_indicator**2 / 2
    return sum(2 if kind is Kind.MEAN else 1 for kind in kinds) * per_indicator


def _noisy(n: int | None, add: Sampler) -> int:
    if n is None:
        raise ValueError("a raw measure must have every count")
    return max(0, add(n))


def _noisy_mean(m: Mean, add: Sampler, add_sum: Sampler, total: MeanSum | None) -> Mean:
    count = _noisy(m.count, add)
    if total is None or count == 0:
        return Mean(count, None)
    steps = add_sum(round(total.clipped_sum / Fraction(total.bound) * SUM_STEPS))
    mean = steps * total.bound / SUM_STEPS / count
    return Mean(count, min(max(mean, 0.0), total.bound))


def _noisy_measure(m: Measure, add: Sampler) -> Measure:
    if isinstance(m, Count):
        return Count(_noisy(m.value, add))
    if isinstance(m, Proportion):
        num = _noisy(m.numerator, add)
        comp = _noisy(_diff(m.denominator, m.numerator), add)
        return Proportion(num, num + comp)
    if isinstance(m, Rate):
        return Rate(_noisy(m.numerator, add), _noisy(m.denominator, add), m.per)
    if isinstance(m, Mean):
        return Mean(_noisy(m.count, add), None)  # a stratum's: its sum is not noised
    assert isinstance(m, Breakdown)
    cells = tuple((cat, _noisy(c, add)) for cat, c in m.cells)
    listed = sum(_c(c) for _, c in m.cells)
    remainder = 0 if m.total is None else _noisy(m.total - listed, add)
    return Breakdown(cells, sum(c for _, c in cells) + remainder)


def _c(n: int | None) -> int:
    if n is None:
        raise ValueError("a raw measure must have every count")
    return n


def _diff(a: int | None, b: int | None) -> int:
    return _c(a) - _c(b)


def _whole_from_strata(whole: Measure, strata: list[Measure], add: Sampler) -> Measure:
    """Noise the remainder of ``whole`` beyond ``strata`` (raw) and add the noisy strata."""

    def total(attr: str, ms: list[Measure]) -> int:
        return sum(_c(getattr(m, attr)) for m in ms)

    if isinstance(whole, Proportion):
        rn = _diff(whole.numerator, total("numerator", strata))
        rd = _diff(whole.denominator, total("denominator", strata))
        noisy_rn, noisy_rc = _noisy(rn, add), _noisy(rd - rn, add)
        return Proportion(noisy_rn, noisy_rn + noisy_rc)  # the remainder; strata added later
    if isinstance(whole, Rate):
        return Rate(
            _noisy(_diff(whole.numerator, total("numerator", strata)), add),
            _noisy(_diff(whole.denominator, total("denominator", strata)), add),
            whole.per,
        )
    if isinstance(whole, Mean):
        return Mean(_noisy(_diff(whole.count, total("count", strata)), add), None)
    if isinstance(whole, Count):
        return Count(_noisy(_diff(whole.value, total("value", strata)), add))
    raise ValueError("strata of a breakdown are not supported with noise")


def _add(a: Measure, b: Measure) -> Measure:
    if isinstance(a, Proportion) and isinstance(b, Proportion):
        return Proportion(
            _c(a.numerator) + _c(b.numerator),
            _c(a.denominator) + _c(b.denominator),
        )
    if isinstance(a, Rate) and isinstance(b, Rate):
        return Rate(
            _c(a.numerator) + _c(b.numerator),
            _c(a.denominator) + _c(b.denominator),
            a.per,
        )
    if isinstance(a, Mean) and isinstance(b, Mean):
        return Mean(_c(a.count) + _c(b.count), None)
    assert isinstance(a, Count) and isinstance(b, Count)
    return Count(_c(a.value) + _c(b.value))


def add_noise(
    results: Sequence[IndicatorResult],
    add: Sampler,
    sums: Sequence[MeanSum | None] = (),
    add_sum: Sampler | None = None,
) -> list[IndicatorResult]:
    """Raw results with noise on every atomic count and on means' sums (``sums``, by
    position; ``add_sum`` noises a sum in steps of 1/SUM_STEPS of its bound); totals
    rebuilt from their noisy parts."""
    sums = list(sums) + [None] * (len(results) - len(sums))
    out: list[IndicatorResult | None] = [None] * len(results)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(results):
        groups[r.indicator].append(i)
    for members in groups.values():
        strata = [i for i in members if results[i].stratum]
        wholes = [i for i in members if not results[i].stratum]
        for i in strata:
            out[i] = IndicatorResult(
                results[i].indicator, _noisy_measure(results[i].measure, add), results[i].stratum
            )
        for i in wholes:
            r = results[i]
            if strata and not isinstance(r.measure, Breakdown):
                raw_strata = [results[j].measure for j in strata]
                whole: Measure = _whole_from_strata(r.measure, raw_strata, add)
                for j in strata:
                    whole = _add(whole, out[j].measure)  # type: ignore[union-attr]
                out[i] = IndicatorResult(r.indicator, whole)
            elif isinstance(r.measure, Mean):
                mean = _noisy_mean(r.measure, add, add_sum or add, sums[i])
                out[i] = IndicatorResult(r.indicator, mean)
            else:
                out[i] = IndicatorResult(r.indicator, _noisy_measure(r.measure, add))
    return [r for r in out if r is not None]


def release_with_noise(
    results: Sequence[IndicatorResult],
    policy: DisclosurePolicy,
    add: Sampler | None = None,
    *,
    sums: Sequence[MeanSum | None] = (),
    add_sum: Sampler | None = None,
) -> list[IndicatorResult]:
    """Disclosure control under ``policy``, with its noise first when it names any.

    Gates read the true ``results``; the values released are the noisy ones.
    """
    if policy.noise == Noise.NONE:
        return release(results, policy)
    add = add or opendp_sampler(policy)
    add_sum = add_sum or (opendp_sampler(policy, SUM_STEPS) if any(sums) else add)
    return release(results, policy, values=add_noise(results, add, sums, add_sum))
